"""Where the trained mini models live in the repository (committed, so nobody has to train them)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MINI_DIR = PROJECT_ROOT / "models" / "mini"
PROMPTS = PROJECT_ROOT / "data" / "prompts_mini.json"
# sceneworld.mini_clip.save records a checkpoint's open_clip architecture in its metadata under this key, because
# one file name holds whichever tower was trained last; checkpoints saved before that record are the pooled ResNet.
ARCH_KEY = "open_clip_arch"
UNRECORDED_ARCH = "tipai-mini-clip"


def clip_checkpoint(root: Path = MINI_DIR) -> Path:
    return root / "clip" / "open_clip_model.safetensors"


def checkpoint_arch(path: Path) -> str:
    """The open_clip architecture of the mini CLIP checkpoint at ``path`` (``UNRECORDED_ARCH`` while there is
    none)."""
    from safetensors import safe_open

    if not path.is_file():
        return UNRECORDED_ARCH
    with safe_open(path, framework="numpy") as checkpoint:
        return (checkpoint.metadata() or {}).get(ARCH_KEY, UNRECORDED_ARCH)


def clip_spec(root: Path = MINI_DIR) -> str:
    """The mini CLIP in ``root`` as a scorer loads it: ``ARCH@checkpoint``."""
    return f"{checkpoint_arch(clip_checkpoint(root))}@{clip_checkpoint(root)}"


def sd_folder(root: Path = MINI_DIR) -> Path:
    return root / "sd"
