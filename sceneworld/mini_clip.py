"""The mini CLIP: a small open_clip model trained contrastively on rendered scenes, with hard-negative captions
that differ from the truth in one colour, kind, count, relation or background (so colours bind to objects).

Its text tower is trained in stage 1 beside a small ViT image tower (``STAGE1_ARCH``); stage 2 trains the image
tower the scorer keeps, a ResNet (``ARCH``), from scratch against that text tower, frozen. The ViT reads kinds
poorly (docs/mini.md, "Why a ResNet image tower"), but the committed mini SD reads prompts with the text tower it
was trained beside, so stage 1 keeps it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors.torch import load_file, save_file

from sceneworld.dataset import SceneSet
from sceneworld.paths import ARCH_KEY, checkpoint_arch
from sceneworld.sampling import hard_negatives
from workers import unpooled_resnet
from workers.tiny import register_model_configs

ARCH = "tipai-mini-clip"
STAGE1_ARCH = "tipai-mini-clip-stage1"
# ARCH with its last stage's average pools removed: a 4x4 final map of a 64-pixel scene (workers/unpooled_resnet.py).
UNPOOLED_ARCH = "tipai-mini-clip-4x4"
_MEAN = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)


def normalise_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, 64, 64) to what open_clip's eval preprocessing gives for 64x64 images."""
    return (pixels.float() / 255.0 - _MEAN.to(pixels.device)) / _STD.to(pixels.device)


def create(seed: int, arch: str = ARCH) -> torch.nn.Module:
    register_model_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return unpooled_resnet.create_model(arch, pretrained=None)


def load(path: Path) -> torch.nn.Module:
    """The checkpoint at ``path`` as the architecture it was saved as."""
    register_model_configs()
    return unpooled_resnet.create_model(checkpoint_arch(path), pretrained=str(path)).eval()


def with_weights(weights: dict[str, torch.Tensor], arch: str) -> torch.nn.Module:
    """A float32 model of ``arch`` holding ``weights``, every one of them."""
    model = create(0, arch)
    model.load_state_dict(weights)
    return model.float().eval()


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 in hardware; on CPUs without it oneDNN emulates it, slower than
    float32."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    return getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()


def _image_features(model, images: torch.Tensor, bf16: bool) -> torch.Tensor:
    with torch.autocast(images.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        features = model.encode_image(images)
    # Similarities in float32: the logit scale (up to 100) would magnify bfloat16's rounding of them.
    return F.normalize(features.float(), dim=-1)


def _loss(
    model, images: torch.Tensor, tokens: torch.Tensor, texts: list[str], batch: int,
    negative_images: torch.Tensor | None = None, bf16: bool = False,
) -> torch.Tensor:
    """Symmetric contrastive loss. Each image also competes against its captions' hard negatives; with
    ``negative_images`` (one per caption, of which it is false) each caption also competes against them.
    ``bf16`` runs the image tower in bfloat16 autocast."""
    image_features = _image_features(model, images, bf16)
    text_features = model.encode_text(tokens, normalize=True)
    scale = model.logit_scale.exp()
    # Two images can share a caption ("a dog"); the other's copy is not a negative.
    ids = {text: k for k, text in enumerate(texts[:batch])}
    same = torch.tensor([ids[t] for t in texts[:batch]], device=images.device)
    duplicate = (same[:, None] == same[None, :]) & ~torch.eye(batch, dtype=torch.bool, device=images.device)
    per_image = scale * image_features @ text_features.T  # positives first, then every image's hard negatives
    per_image[:, :batch] = per_image[:, :batch].masked_fill(duplicate, -1e4)
    per_text = (scale * text_features[:batch] @ image_features.T).masked_fill(duplicate, -1e4)
    if negative_images is not None:
        per_text = torch.cat([per_text, scale * text_features[:batch] @ _image_features(model, negative_images,
                                                                                        bf16).T], 1)
    target = torch.arange(batch, device=images.device)
    return (F.cross_entropy(per_image, target) + F.cross_entropy(per_text, target)) / 2


def _fit(
    model: torch.nn.Module, params: list[torch.nn.Parameter], data: SceneSet, counterfactuals: torch.Tensor | None,
    steps: int, batch: int, negatives: int, lr: float, seed: int, log: Callable[[str], None], name: str,
    device: str, bf16: bool = False,
) -> torch.nn.Module:
    tokenizer = open_clip.get_tokenizer(ARCH)
    model.to(device)
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    rng = np.random.default_rng(seed)
    # Batches are drawn on the CPU on every device, so a seed picks the same scenes and captions everywhere.
    generator = torch.Generator().manual_seed(seed)
    started = time.monotonic()
    model.train()
    for step in range(steps):
        index = torch.randint(len(data.samples), (batch,), generator=generator)
        chosen = [data.samples[i] for i in index.tolist()]
        texts = [s.caption.text() for s in chosen]
        texts += [n.text() for s in chosen for n in hard_negatives(s.caption, s.full, rng, negatives)]
        negative_images = None if counterfactuals is None else normalise_pixels(counterfactuals[index].to(device))
        loss = _loss(model, normalise_pixels(data.pixels[index].to(device)), tokenizer(texts).to(device), texts,
                     batch, negative_images, bf16)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 50 == 0 or step == steps - 1:
            log(f"{name} step {step + 1}/{steps} loss {loss.item():.3f} ({time.monotonic() - started:.0f} s)")
    model.eval()
    return model


def train(
    data: SceneSet, steps: int, batch: int, negatives: int, lr: float, seed: int, log: Callable[[str], None],
    device: str = "cpu",
) -> torch.nn.Module:
    """Stage 1: both towers from scratch (the stage-1 ViT image tower), hard negative captions."""
    model = create(seed, STAGE1_ARCH)
    return _fit(model, list(model.parameters()), data, None, steps, batch, negatives, lr, seed, log, "clip", device)


def tune_vision(
    model: torch.nn.Module, data: SceneSet, counterfactuals: torch.Tensor, steps: int, batch: int, negatives: int,
    lr: float, seed: int, log: Callable[[str], None], device: str = "cpu",
) -> torch.nn.Module:
    """Stage 2: the image tower alone learns to rank a caption's own scene above the scene one object away
    (``counterfactuals[i]`` is false of caption i) as well as the caption above its hard negatives. Captions alone
    never teach the first direction: a batch's other images differ in everything. The text tower stays as it is,
    so the mini SD, which reads prompts with it, is unaffected.

    Where the device has bfloat16 in hardware the ResNet runs in bfloat16 autocast: on the CPU 0.43 against 0.68 s
    per step of 64 on 2 cores, side by side over 500 steps, with the same held-out accuracies (docs/mini.md,
    "Retraining"). Stage 1 gains nothing from it on the CPU, nor does the mini SD's UNet, so they stay in float32."""
    model.requires_grad_(False)
    params = [*model.visual.parameters(), model.logit_scale]
    for parameter in params:
        parameter.requires_grad_(True)
    _fit(model, params, data, counterfactuals, steps, batch, negatives, lr, seed, log, "clip vision", device,
         native_bf16(device))
    model.requires_grad_(True)
    return model


def with_text_tower(path: Path, seed: int) -> torch.nn.Module:
    """A model whose image tower is new (drawn from ``seed``) and whose text tower and temperature are those of
    the checkpoint at ``path``, whatever image tower that checkpoint had."""
    model = create(seed)
    text = {name: weight for name, weight in load_file(path).items() if not name.startswith("visual.")}
    missing = [name for name in model.load_state_dict(text, strict=False).missing_keys
               if not name.startswith("visual.")]
    if missing:
        raise ValueError(f"{path} lacks text-tower weights: {', '.join(missing)}")
    return model


def save(model: torch.nn.Module, path: Path, arch: str) -> None:
    """Half-precision safetensors that open_clip loads as ``arch@path`` (it casts back to the model's precision),
    with ``arch`` recorded in them."""
    save_weights(model.state_dict(), path, arch)


def save_weights(weights: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().cpu().contiguous() for k, v in weights.items()}, path, metadata={ARCH_KEY: arch})


def mix_weights(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
                share: float) -> dict[str, torch.Tensor]:
    """Weight-space ensembling (WiSE-FT): each floating-point weight ``share`` of the way from ``before`` to
    ``after``, in float32 and back to its own dtype. Weights a run left as they were stay bitwise (the text tower),
    and counters are ``after``'s."""
    return {name: weight if torch.equal(weight, before[name]) or not weight.is_floating_point()
            else ((1 - share) * before[name].float() + share * weight.float()).to(weight.dtype)
            for name, weight in after.items()}
