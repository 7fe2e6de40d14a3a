"""ResNet image towers whose last stage keeps its input's resolution, so a 64-pixel scene ends as a 4x4 map.

open_clip's ModifiedResNet halves the map in its last stage with two 2x2 average pools, one after the stage's 3x3
convolution and one on its shortcut: a 64-pixel scene reaches the attention pool as 2x2 cells, too coarse to tell
four objects from five (docs/localization.md, "Four or five"). Pools hold no weights, so without them the same
weights read a 4x4 map; only the attention pool's positional embedding grows.

open_clip has no setting for this. These architectures are registered with an ``image_size`` twice their input
(the attention pool sizes its positional embedding from ``image_size // 32``), and ``adapt`` removes the pools
once open_clip has built the model and loaded its weights. Their preprocessing keeps the input size. Every model
of the project is built through ``create_model``, which does both for these architectures.
"""

from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet

# Architecture name -> the input size in pixels (half the image_size of its open_clip config).
INPUT_SIZE = {"tipai-mini-clip-4x4": 64}
_POSITIONAL = "visual.attnpool.positional_embedding"


def is_unpooled(arch: str) -> bool:
    return arch in INPUT_SIZE


def preprocess_size(arch: str) -> dict:
    """open_clip's force_preprocess_cfg that keeps ``arch``'s input size; empty for other architectures."""
    return {"size": INPUT_SIZE[arch]} if is_unpooled(arch) else {}


def adapt(arch: str, model: torch.nn.Module) -> torch.nn.Module:
    """Remove the last stage's pools of ``model``, built by open_clip as ``arch``; other architectures pass as
    they are."""
    if not is_unpooled(arch):
        return model
    visual = model.visual
    if not isinstance(visual, ModifiedResNet):
        raise TypeError(f"{arch} must have a ModifiedResNet image tower, not {type(visual).__name__}")
    first = visual.layer4[0]
    # The shortcut's first module is its pool (open_clip names it "-1"), then a 1x1 convolution with weights.
    first.avgpool = torch.nn.Identity()
    first.downsample[0] = torch.nn.Identity()
    visual.image_size = INPUT_SIZE[arch]
    return model


def create_model(arch: str, **options) -> torch.nn.Module:
    """``open_clip.create_model(arch, **options)``, an unpooled architecture's pools removed and its input size
    kept; other architectures as open_clip builds them."""
    if is_unpooled(arch):
        options["force_preprocess_cfg"] = options.get("force_preprocess_cfg", {}) | preprocess_size(arch)
    return adapt(arch, open_clip.create_model(arch, **options))


def from_pooled(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights of a pooled tower, ready for its unpooled twin: the attention pool's positional embedding,
    class token first and then a G x G grid, interpolated bilinearly to 2G x 2G. Every other weight is kept."""
    positional = state[_POSITIONAL]
    cells = positional.shape[0] - 1
    side = round(cells**0.5)
    if side * side != cells:
        raise ValueError(f"{_POSITIONAL} has {positional.shape[0]} rows: not a class token and a square grid")
    grid = positional[1:].float().reshape(side, side, -1).permute(2, 0, 1)[None]
    grid = F.interpolate(grid, size=(2 * side, 2 * side), mode="bilinear", align_corners=False)
    grid = grid[0].permute(1, 2, 0).reshape(4 * cells, -1)
    return state | {_POSITIONAL: torch.cat([positional[:1].float(), grid]).to(positional.dtype)}
