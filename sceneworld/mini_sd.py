"""The mini Stable Diffusion: a stock diffusers pipeline (small VAE, UNet and CLIP text encoder, the CLIP BPE
tokenizer) trained from scratch on rendered scenes and their captions.

Two stages: the VAE learns to compress 64x64 scenes into 16x16x4 latents; then the UNet and the text encoder
learn together to denoise the (cached) latents of scenes given their captions, with the caption dropped 10% of the
time so classifier-free guidance works.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from sceneworld.dataset import SceneSet
from workers.tokenizer import CONTEXT_LENGTH, write_clip_tokenizer

TEXT_WIDTH = 64
CAPTION_DROP = 0.1
# Stable Diffusion 1.x's noise schedule.
NOISE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def tokenizer() -> CLIPTokenizer:
    with tempfile.TemporaryDirectory() as folder:
        write_clip_tokenizer(Path(folder))
        return CLIPTokenizer.from_pretrained(folder)


def create(seed: int, tok: CLIPTokenizer) -> tuple[AutoencoderKL, UNet2DConditionModel, CLIPTextModel]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(32, 32, 64),
            layers_per_block=1,
            latent_channels=4,
            sample_size=64,
            # Attention over 16x16 positions costs more than the rest of this small VAE and flat scenes don't need it.
            mid_block_add_attention=False,
        )
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(32, 64, 128),
            layers_per_block=1,
            cross_attention_dim=TEXT_WIDTH,
            attention_head_dim=4,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=TEXT_WIDTH,
                intermediate_size=4 * TEXT_WIDTH,
                num_hidden_layers=3,
                num_attention_heads=4,
                vocab_size=len(tok),
                max_position_embeddings=CONTEXT_LENGTH,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
        )
    return vae, unet, text_encoder


def _to_unit(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


def _cosine(optimiser: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )


def train_vae(
    vae: AutoencoderKL, data: SceneSet, steps: int, batch: int, lr: float, seed: int, log: Callable[[str], None]
) -> None:
    optimiser = torch.optim.AdamW(vae.parameters(), lr=lr)
    schedule = _cosine(optimiser, steps)
    generator = torch.Generator().manual_seed(seed)
    started = time.monotonic()
    vae.train()
    for step in range(steps):
        pixels = _to_unit(data.pixels[torch.randint(len(data.samples), (batch,), generator=generator)])
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.sample(generator)).sample
        # Flat-coloured scenes have sharp edges: L1 keeps them crisper than L2 alone.
        loss = F.l1_loss(reconstruction, pixels) + F.mse_loss(reconstruction, pixels) + 1e-6 * posterior.kl().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"vae step {step + 1}/{steps} loss {loss.item():.4f} ({time.monotonic() - started:.0f} s)")
    vae.eval()


@torch.no_grad()
def encode_all(vae: AutoencoderKL, data: SceneSet, batch: int = 256) -> torch.Tensor:
    """Latent means of every scene, scaled to unit variance as Stable Diffusion expects (sets scaling_factor)."""
    latents = torch.cat([
        vae.encode(_to_unit(data.pixels[k : k + batch])).latent_dist.mean for k in range(0, len(data.samples), batch)
    ])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return latents * vae.config.scaling_factor


def train_unet(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    tok: CLIPTokenizer,
    latents: torch.Tensor,
    texts: list[str],
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    log: Callable[[str], None],
) -> None:
    noise_schedule = DDPMScheduler(**NOISE)
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = _cosine(optimiser, steps)
    generator = torch.Generator().manual_seed(seed)
    ids = tok(texts + [""], padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    empty = ids[-1]
    started = time.monotonic()
    unet.train()
    text_encoder.train()
    for step in range(steps):
        index = torch.randint(len(texts), (batch,), generator=generator)
        tokens = ids[index].clone()
        tokens[torch.rand(batch, generator=generator) < CAPTION_DROP] = empty
        clean = latents[index]
        noise = torch.randn(clean.shape, generator=generator)
        t = torch.randint(0, NOISE["num_train_timesteps"], (batch,), generator=generator)
        noisy = noise_schedule.add_noise(clean, noise, t)
        predicted = unet(noisy, t, encoder_hidden_states=text_encoder(tokens)[0]).sample
        loss = F.mse_loss(predicted, noise)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"unet step {step + 1}/{steps} loss {loss.item():.4f} ({time.monotonic() - started:.0f} s)")
    unet.eval()
    text_encoder.eval()


def save(folder: Path, vae, unet, text_encoder, tok: CLIPTokenizer) -> None:
    """A standard diffusers folder, weights in half precision (loaders cast them to the dtype they ask for)."""
    pipe = StableDiffusionPipeline(
        vae=vae.half(),
        unet=unet.half(),
        text_encoder=text_encoder.half(),
        tokenizer=tok,
        scheduler=DPMSolverMultistepScheduler(**NOISE, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if folder.exists():
        shutil.rmtree(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    for module in (vae, unet, text_encoder):
        module.float()
