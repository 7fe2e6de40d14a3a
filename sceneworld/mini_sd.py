"""The mini Stable Diffusion: a stock diffusers pipeline (small VAE, UNet and CLIP text encoder, the CLIP BPE
tokenizer) trained from scratch on rendered scenes and their captions.

Stable Diffusion's recipe, scaled down:
- the text encoder is a pretrained CLIP text tower, frozen: here the mini CLIP's, converted to transformers'
  ``CLIPTextModel``, so the UNet learns from text features that already bind colours to objects;
- the VAE learns to compress 64x64 scenes into 16x16x4 latents;
- the UNet learns to denoise the (cached) latents given the (cached) text features, with the caption dropped 10%
  of the time so classifier-free guidance works, and Min-SNR loss weighting, which converges several times faster
  than the plain noise loss (Hang et al., 2023).
"""

from __future__ import annotations

import copy
import json
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
from workers.tokenizer import write_clip_tokenizer

CAPTION_DROP = 0.1
MIN_SNR_GAMMA = 5.0
# Stable Diffusion 1.x's noise schedule.
NOISE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def tokenizer(context_length: int) -> CLIPTokenizer:
    with tempfile.TemporaryDirectory() as folder:
        write_clip_tokenizer(Path(folder), context_length)
        return CLIPTokenizer.from_pretrained(folder)


def text_encoder_from_clip(clip: torch.nn.Module, tok: CLIPTokenizer) -> CLIPTextModel:
    """The open_clip model's text tower as a transformers ``CLIPTextModel`` (same layers, renamed and with the
    fused attention projection split), so the stock pipeline runs it."""
    blocks = clip.transformer.resblocks
    width = clip.transformer.width
    encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=width,
            intermediate_size=blocks[0].mlp.c_fc.out_features,
            num_hidden_layers=len(blocks),
            num_attention_heads=blocks[0].attn.num_heads,
            vocab_size=clip.token_embedding.num_embeddings,
            max_position_embeddings=clip.positional_embedding.shape[0],
            hidden_act="gelu",  # open_clip's default; OpenAI's checkpoints use quick_gelu
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    source = {k: v.float() for k, v in clip.state_dict().items()}
    weights = {
        "embeddings.token_embedding.weight": source["token_embedding.weight"],
        "embeddings.position_embedding.weight": source["positional_embedding"],
        "final_layer_norm.weight": source["ln_final.weight"],
        "final_layer_norm.bias": source["ln_final.bias"],
    }
    renames = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
               "attn.out_proj": "self_attn.out_proj"}
    for i in range(len(blocks)):
        ours, theirs = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for old, new in renames.items():
            for kind in ("weight", "bias"):
                weights[f"{theirs}{new}.{kind}"] = source[f"{ours}{old}.{kind}"]
        for kind in ("weight", "bias"):
            for name, part in zip("qkv", source[f"{ours}attn.in_proj_{kind}"].chunk(3)):
                weights[f"{theirs}self_attn.{name}_proj.{kind}"] = part
    missing, unexpected = encoder.load_state_dict(weights, strict=False)
    # transformers keeps position ids as a buffer; everything else must have come from the CLIP.
    if [k for k in missing if not k.endswith("position_ids")] or unexpected:
        raise RuntimeError(f"text tower conversion mismatch: missing {missing}, unexpected {unexpected}")
    return encoder.eval().requires_grad_(False)


def create(seed: int, clip: torch.nn.Module) -> tuple[AutoencoderKL, UNet2DConditionModel, CLIPTextModel,
                                                      CLIPTokenizer]:
    tok = tokenizer(clip.positional_embedding.shape[0])
    text_encoder = text_encoder_from_clip(clip, tok)
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
            # diffusers' default of 32 groups makes every group one channel at this width: each channel is
            # normalised on its own, per image, and an object's colour, a small part of the image, is washed out.
            # With 8 groups the VAE reconstructs held-out scenes better after 400 steps (8.55 against 9.47 /255 MAE)
            # and the UNet's validation loss falls faster (0.056 against 0.062 after 200 steps).
            norm_num_groups=8,
        )
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(32, 64, 128),
            layers_per_block=1,
            cross_attention_dim=text_encoder.config.hidden_size,
            attention_head_dim=4,
            norm_num_groups=8,
        )
    return vae, unet, text_encoder, tok


def _to_unit(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


def from_unit(decoded: torch.Tensor) -> torch.Tensor:
    """What the VAE decodes, in -1..1, as uint8 pixels on the CPU."""
    return ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


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
    # Drawn on the CPU on every device, so a seed picks the same scenes everywhere.
    generator = torch.Generator().manual_seed(seed)
    started = time.monotonic()
    vae.train()
    for step in range(steps):
        pixels = _to_unit(data.pixels[torch.randint(len(data.samples), (batch,), generator=generator)].to(vae.device))
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
def reconstruct(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """uint8 scenes through the VAE and back (latent means, as the UNet is trained on them), uint8 on the CPU."""
    return from_unit(vae.decode(vae.encode(_to_unit(pixels).to(vae.device, vae.dtype)).latent_dist.mean).sample)


def reconstruction_error(pixels: torch.Tensor, reconstructed: torch.Tensor) -> float:
    """Mean absolute error in 0..255 levels."""
    return float((pixels.float() - reconstructed.float()).abs().mean())


@torch.no_grad()
def encode_all(vae: AutoencoderKL, data: SceneSet, batch: int = 256, keep_scale: bool = False) -> torch.Tensor:
    """Latent means of every scene, scaled to unit variance as Stable Diffusion expects (sets scaling_factor,
    unless ``keep_scale``: a UNet trained further must see latents on the scale it learnt)."""
    latents = torch.cat([
        vae.encode(_to_unit(data.pixels[k : k + batch]).to(vae.device, vae.dtype)).latent_dist.mean
        for k in range(0, len(data.samples), batch)
    ])
    if not keep_scale:
        vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return latents * vae.config.scaling_factor


@torch.no_grad()
def encode_texts(text_encoder: CLIPTextModel, tok: CLIPTokenizer, texts: list[str], batch: int = 512) -> torch.Tensor:
    """Per-token text features, as the pipeline computes them (pad to the context, last hidden state)."""
    states = []
    for k in range(0, len(texts), batch):
        ids = tok(texts[k : k + batch], padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        states.append(text_encoder(ids.to(text_encoder.device))[0])
    return torch.cat(states)


def _min_snr_weights(noise_schedule: DDPMScheduler) -> torch.Tensor:
    alphas = noise_schedule.alphas_cumprod
    snr = alphas / (1 - alphas)
    # Min-SNR-gamma for a noise-predicting model: easy (low-noise) steps stop dominating the gradient.
    return torch.clamp(snr, max=MIN_SNR_GAMMA) / snr


def _denoising_loss(unet: UNet2DConditionModel, noise_schedule: DDPMScheduler, weight: torch.Tensor,
                    clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    predicted = unet(noise_schedule.add_noise(clean, noise, t), t, encoder_hidden_states=states).sample
    # In float32 also for a half-precision UNet (a pipeline on a GPU): half's rounding would move the mean.
    return (F.mse_loss(predicted.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3)) * weight[t]).mean()


@torch.no_grad()
def heldout_loss(pipe: StableDiffusionPipeline, data: SceneSet, seed: int = 0, batch: int = 64) -> float:
    """The UNet's training loss on scenes it never saw, at noise and timesteps fixed by ``seed``. It measures
    how far training has come smoothly, where the GenEval-style score moves by whole images."""
    noise_schedule = DDPMScheduler(**NOISE)
    weight = _min_snr_weights(noise_schedule).to(pipe.device)
    latents = encode_all(pipe.vae, data, keep_scale=True)
    states = encode_texts(pipe.text_encoder, pipe.tokenizer, data.texts)
    # Drawn on the CPU, so a seed fixes the same noise on every device.
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator).to(pipe.device, latents.dtype)
    t = torch.randint(0, NOISE["num_train_timesteps"], (len(latents),), generator=generator).to(pipe.device)
    total = sum(
        float(_denoising_loss(pipe.unet, noise_schedule, weight, latents[k : k + batch], noise[k : k + batch],
                              t[k : k + batch], states[k : k + batch])) * len(latents[k : k + batch])
        for k in range(0, len(latents), batch)
    )
    return total / len(latents)


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
    ema_decay: float | None = None,
) -> UNet2DConditionModel:
    """Returns the trained UNet, or with ``ema_decay`` its exponential moving average, which the run keeps beside
    it."""
    device = unet.device
    noise_schedule = DDPMScheduler(**NOISE)
    weight = _min_snr_weights(noise_schedule).to(device)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    schedule = _cosine(optimiser, steps)
    # Batches, noise and timesteps are drawn on the CPU on every device, so a seed draws the same ones everywhere.
    generator = torch.Generator().manual_seed(seed)
    # Distinct captions are far fewer than scenes; the frozen encoder runs once per caption.
    distinct = sorted(set(texts))
    row = {text: k for k, text in enumerate(distinct)}
    states = encode_texts(text_encoder, tok, distinct + [""])
    caption_of = torch.tensor([row[text] for text in texts])
    empty = len(distinct)
    # oneDNN's convolutions run faster on channels-last tensors on CPU: about 10% here (0.37 against 0.41 s per step
    # of 32 latents on 2 cores, runs alternated), for the same arithmetic.
    unet.to(memory_format=torch.channels_last)
    average = copy.deepcopy(unet).eval().requires_grad_(False) if ema_decay else None
    started = time.monotonic()
    unet.train()
    for step in range(steps):
        index = torch.randint(len(texts), (batch,), generator=generator)
        rows = caption_of[index].clone()
        rows[torch.rand(batch, generator=generator) < CAPTION_DROP] = empty
        clean = latents[index.to(latents.device)].contiguous(memory_format=torch.channels_last)
        noise = torch.randn(clean.shape, generator=generator).to(device)
        t = torch.randint(0, NOISE["num_train_timesteps"], (batch,), generator=generator).to(device)
        loss = _denoising_loss(unet, noise_schedule, weight, clean, noise, t, states[rows.to(states.device)])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if average is not None:
            # The usual warm-up of the decay: early averages follow the weights instead of lagging far behind.
            decay = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for kept, trained in zip(average.parameters(), unet.parameters()):
                    kept.lerp_(trained, 1 - decay)
        if step % 50 == 0 or step == steps - 1:
            log(f"unet step {step + 1}/{steps} loss {loss.item():.4f} ({time.monotonic() - started:.0f} s)")
    result = average if average is not None else unet
    # safetensors stores plain contiguous tensors.
    result.to(memory_format=torch.contiguous_format)
    return result.eval()


def load_trained(folder: Path) -> tuple[AutoencoderKL, UNet2DConditionModel, CLIPTextModel]:
    """The VAE, UNet and text encoder of a saved mini SD, in full precision for training."""
    return (
        # low_cpu_mem_usage: as in workers/generation.py, the default only asks for `accelerate`.
        AutoencoderKL.from_pretrained(folder, subfolder="vae", low_cpu_mem_usage=False).float().eval(),
        UNet2DConditionModel.from_pretrained(folder, subfolder="unet", low_cpu_mem_usage=False).float(),
        CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").float().eval(),
    )


def save(folder: Path, vae, unet, text_encoder, tok: CLIPTokenizer) -> None:
    """A standard diffusers folder, weights in half precision (loaders cast them to the dtype they ask for)."""
    pipe = StableDiffusionPipeline(
        vae=vae.cpu().half(),
        unet=unet.cpu().half(),
        text_encoder=text_encoder.cpu().half(),
        tokenizer=tok,
        scheduler=DPMSolverMultistepScheduler(**NOISE, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if folder.exists():
        shutil.rmtree(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    # Modules loaded from a folder (a continued UNet, its VAE) record that folder's path: a path on the machine that
    # trained them, meaningless in the committed folder.
    for config in folder.glob("*/config.json"):
        fields = json.loads(config.read_text())
        if fields.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    for module in (vae, unet, text_encoder):
        module.float()
