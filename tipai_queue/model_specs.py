"""What a model spec may look like, checked when a batch is submitted and before anything is written: a typo should
fail the submit in one clear line, not every image minutes later on a worker.

Nothing is loaded or imported here (the submitter and the demo page stay light). Whether the weights exist is the
workers' question: the submitter need not see their model folders (in docker-compose it does not), so a path
missing on this machine is only worth a warning."""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from pathlib import Path

from tipai_queue.settings import PROJECT_ROOT
from workers.localize import METHODS

BUILTIN_TINY_SD = "builtin:tiny-sd"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
PROJECT_CLIP_CONFIGS = PROJECT_ROOT / "workers" / "model_configs"


@cache
def _clip_configs() -> dict[str, Path]:
    """open_clip's architectures (one JSON config each, found without importing open_clip and torch) and this
    project's own, which win a clash as they do once registered."""
    found = importlib.util.find_spec("open_clip")
    folders = [PROJECT_CLIP_CONFIGS]
    if found and found.submodule_search_locations:
        folders.insert(0, Path(next(iter(found.submodule_search_locations))) / "model_configs")
    return {config.stem: config for folder in folders for config in folder.glob("*.json")}


def clip_architectures() -> frozenset[str]:
    return frozenset(_clip_configs())


def has_patch_tokens(arch: str) -> bool:
    """Whether open_clip builds the image tower of ``arch`` as its own VisionTransformer or ModifiedResNet (an int
    of layers or a list of them), whose patch tokens or final map's cells the dense method reads; a timm name
    makes a timm model, which it cannot."""
    vision = json.loads(_clip_configs()[arch].read_text()).get("vision_cfg", {})
    return not vision.get("timm_model_name")


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", ".", "~"))


def generator_problem(spec: str) -> str | None:
    if spec == BUILTIN_TINY_SD or HUB_ID.match(spec) or _looks_like_path(spec) or Path(spec).is_dir():
        return None
    return (f"generator {spec!r} is neither a Hugging Face model id (like stabilityai/sd-turbo) nor a folder "
            f"(an absolute path, or one starting with ./ or ~)")


def scorer_problem(spec: str) -> str | None:
    arch, sep, pretrained = spec.partition("@")
    if not sep or not arch or not pretrained:
        return f"scorer {spec!r} must look like ARCH@PRETRAINED, e.g. ViT-L-14@openai or ViT-B-32@/path/to/weights"
    if arch not in clip_architectures():
        return f"scorer architecture {arch!r} is not known to open_clip (e.g. ViT-B-32, ViT-L-14, ViT-H-14)"
    return None


def method_problem(method: str, scorer: str) -> str | None:
    """A localization method the scorer cannot run (the scorer spec already checked)."""
    arch = scorer.partition("@")[0]
    if method == "dense" and not has_patch_tokens(arch):
        others = ", ".join(name for name in METHODS if name != "dense")
        return (f"the dense method reads the patch tokens of open_clip's own ViT and ResNet towers, and the image "
                f"tower of scorer {arch!r} is a timm model; "
                f"choose one of: {others}")
    return None


def missing_here(generator: str, scorer: str) -> list[str]:
    """Local paths a spec names that this machine does not have (the workers may)."""
    paths = [generator] if _looks_like_path(generator) else []
    pretrained = scorer.partition("@")[2]
    paths += [pretrained] if _looks_like_path(pretrained) else []
    return [path for path in paths if not Path(path).expanduser().exists()]
