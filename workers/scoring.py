"""How well an image matches its prompt, globally and per cell of a G x G grid, with an open_clip CLIP model."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import hf_hub_download
from open_clip.constants import HF_WEIGHTS_NAME
from open_clip.pretrained import _get_safe_alternatives, download_pretrained
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from workers import unpooled_resnet
from workers.devices import dtype_for
from workers.errors import ModelUnavailable
from workers.tiny import TINY_CLIP_ARCH, ensure_tiny_clip, register_model_configs

BUILTIN = "builtin"
# Preprocessing settings a pretrained tag carries; passing the weights as a file would otherwise lose them.
_TAG_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


@dataclass(frozen=True)
class ScoreResult:
    global_cosine: float  # raw cosine(text, image) embeddings
    patch_cosines: list[float]  # G*G, row-major: cell 0 top-left, cell G-1 top-right, G*G-1 bottom-right
    truncated: bool  # the prompt had more than CLIP's context length tokens and was cut


def score_01(cosine: float) -> float:
    """CLIPScore-style rescaling with w=2.5 (Hessel et al. 2021): image-text cosines rarely exceed 0.4."""
    return min(max(2.5 * cosine, 0.0), 1.0)


def grid_boxes(width: int, height: int, grid: int) -> list[tuple[int, int, int, int]]:
    """PIL crop boxes (left, top, right, bottom) of a grid x grid split, row-major, tiling the image exactly."""
    if not 1 <= grid <= min(width, height):
        raise ValueError(f"a {grid}x{grid} grid does not fit a {width}x{height} image")
    xs = [round(i * width / grid) for i in range(grid + 1)]
    ys = [round(i * height / grid) for i in range(grid + 1)]
    return [(xs[col], ys[row], xs[col + 1], ys[row + 1]) for row in range(grid) for col in range(grid)]


class Scorer:
    """An open_clip model, its eval preprocessing (and the settings it is built from) and its tokenizer, on one
    device."""

    def __init__(
        self,
        spec: str,
        device: str,
        model: torch.nn.Module,
        preprocess_cfg: PreprocessCfg,
        tokenizer: SimpleTokenizer,
    ) -> None:
        self.spec = spec
        self.device = device
        self.model = model
        # Kept beside the preprocessing so what reads the scorer's inputs back (workers/localize/common.py) undoes
        # exactly the normalisation it applied.
        self.preprocess_cfg = preprocess_cfg
        self.preprocess: Callable[[Image.Image], torch.Tensor] = image_transform_v2(preprocess_cfg, is_train=False)
        self.tokenizer = tokenizer

    def score(self, image: Image.Image, prompt: str, grid: int) -> ScoreResult:
        image = image.convert("RGB")
        crops = [image] + [image.crop(box) for box in grid_boxes(image.width, image.height, grid)]
        pixels = torch.stack([self.preprocess(crop) for crop in crops]).to(self.device, dtype_for(self.device))
        tokens = self.tokenizer([prompt]).to(self.device)
        with torch.inference_mode():
            # Whole image and every cell in one forward pass: one batch is far faster than G*G+1 small ones.
            image_features = self.model.encode_image(pixels, normalize=True).float()
            text_features = self.model.encode_text(tokens, normalize=True).float()
        cosines = (image_features @ text_features.T).squeeze(1).tolist()
        return ScoreResult(
            global_cosine=cosines[0],
            patch_cosines=cosines[1:],
            truncated=self.is_truncated(prompt),
        )

    def is_truncated(self, prompt: str) -> bool:
        # The context holds start and end tokens around the prompt's BPE tokens.
        return len(self.tokenizer.encode(prompt)) > self.tokenizer.context_length - 2


def _cached_tag_checkpoint(tag_cfg: dict) -> str | None:
    """Where open_clip would have put this tag's weights, if it already downloaded them; never downloads."""
    if tag_cfg.get("hf_hub"):
        model_id, filename = os.path.split(tag_cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        # Same preference as open_clip's own download: a .safetensors twin first, then the named file.
        for candidate in [*_get_safe_alternatives(filename), filename]:
            try:
                return hf_hub_download(model_id, candidate, local_files_only=True)
            except FileNotFoundError:
                continue
    if tag_cfg.get("url"):
        legacy = Path("~/.cache/clip").expanduser() / os.path.basename(tag_cfg["url"])
        if legacy.is_file():
            return str(legacy)
    return None


def _tag_checkpoint(arch: str, tag: str, tag_cfg: dict) -> str:
    cached = _cached_tag_checkpoint(tag_cfg)
    if cached:
        return cached
    if hub_constants.HF_HUB_OFFLINE:
        raise ModelUnavailable.scorer(arch, tag, "the hub is unreachable (HF_HUB_OFFLINE=1)")
    if not tag_cfg.get("hf_hub"):
        # open_clip fetches URL-only tags with urllib and no timeout, which could hang a worker forever.
        raise ModelUnavailable.scorer(arch, tag, f"it is only published at {tag_cfg['url']}")
    try:
        # huggingface_hub bounds each request (HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT), so this fails
        # instead of hanging when the hub is unreachable.
        return download_pretrained({"hf_hub": tag_cfg["hf_hub"]})
    except OSError as failed:
        raise ModelUnavailable.scorer(arch, tag, f"downloading them failed ({failed})") from failed


def load_scorer(spec: str, device: str, models_dir: Path) -> Scorer:
    """Load a scorer from "ARCH@PRETRAINED": an open_clip tag, a local checkpoint file, or "builtin" for the tiny
    model (e.g. "ViT-L-14@openai", "ViT-L-14@/models/vit-l.safetensors", "tipai-tiny-clip@builtin")."""
    arch, sep, pretrained = spec.partition("@")
    if not sep or not arch or not pretrained:
        raise ValueError(f"scorer {spec!r} must look like ARCH@PRETRAINED, e.g. ViT-L-14@openai")
    register_model_configs()
    if arch not in open_clip.list_models():
        raise ValueError(f"scorer architecture {arch!r} is not known to open_clip")

    options: dict = {}
    tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if pretrained == BUILTIN:
        if arch != TINY_CLIP_ARCH:
            raise ValueError(f"only {TINY_CLIP_ARCH} has built-in weights, not {arch}")
        checkpoint = str(ensure_tiny_clip(models_dir))
    elif tag_cfg:
        checkpoint = _tag_checkpoint(arch, pretrained, tag_cfg)
        options["force_quick_gelu"] = tag_cfg.get("quick_gelu", False)
        options["force_preprocess_cfg"] = {key: tag_cfg[key] for key in _TAG_PREPROCESS_KEYS if key in tag_cfg}
    elif Path(pretrained).expanduser().is_file():
        checkpoint = str(Path(pretrained).expanduser())
    else:
        raise ModelUnavailable(
            f"scorer {spec}: {pretrained!r} is neither an open_clip pretrained tag for {arch} "
            f"(known: {', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}) nor an existing "
            f"checkpoint file. Pass a local checkpoint file as {arch}@/path/to/file."
        )

    tokenizer = open_clip.get_tokenizer(arch)
    if not isinstance(tokenizer, SimpleTokenizer):
        raise ValueError(f"scorer {arch!r} uses a {type(tokenizer).__name__}; only CLIP BPE models are supported")
    # create_model rather than create_model_and_transforms: only it takes the preprocessing overrides whole.
    model = unpooled_resnet.create_model(
        arch,
        pretrained=checkpoint,
        precision="fp16" if dtype_for(device) == torch.float16 else "fp32",
        device=device,
        **options,
    )
    model.eval()
    return Scorer(spec, device, model, PreprocessCfg(**model.visual.preprocess_cfg), tokenizer)
