"""Where the trained mini models live in the repository (committed, so nobody has to train them)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MINI_DIR = PROJECT_ROOT / "models" / "mini"
PROMPTS = PROJECT_ROOT / "data" / "prompts_mini.json"


def clip_checkpoint(root: Path = MINI_DIR) -> Path:
    return root / "clip" / "open_clip_model.safetensors"


def sd_folder(root: Path = MINI_DIR) -> Path:
    return root / "sd"
