"""Tiny Stable Diffusion and CLIP models built in code, for tests and offline smoke runs.

They are randomly initialised, so their images are noise and their scores meaningless, but they go through exactly
the loading and inference paths the real models use. Initialisation is seeded, so every machine builds the same
bytes and results are reproducible across runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

from workers.tokenizer import CONTEXT_LENGTH, write_clip_tokenizer

TINY_CLIP_ARCH = "tipai-tiny-clip"
MODEL_CONFIGS_DIR = Path(__file__).parent / "model_configs"


def register_model_configs() -> None:
    """Make open_clip know the architectures in workers/model_configs (safe to call repeatedly)."""
    if TINY_CLIP_ARCH not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIGS_DIR)


def _publish(target: Path, build: Callable[[Path], None]) -> None:
    """Build into a temporary folder beside ``target`` and rename it into place.

    Several worker processes may start at once: each builds its own copy, the first rename wins, and the losers
    discard theirs. Nobody ever sees a half-written model.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        # mkdtemp makes the folder private; the published model should be readable like any other.
        tmp.chmod(0o755)
        os.rename(tmp, target)
    except OSError:
        if not target.exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_tiny_sd(folder: Path) -> None:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    write_clip_tokenizer(folder / "tokenizer-source")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer-source")
    shutil.rmtree(folder / "tokenizer-source")

    # fork_rng keeps the caller's global RNG stream untouched by our seeding.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=(2, 4),
        )
        # Two resolution levels: the latent is half the image size, so a 64x64 image maps onto the 32x32 UNet.
        vae = AutoencoderKL(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                vocab_size=len(tokenizer),
                max_position_embeddings=CONTEXT_LENGTH,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        # Stable Diffusion 1.x's noise schedule, so the tiny pipeline runs the same scheduler code paths.
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)


def ensure_tiny_sd(models_dir: Path) -> Path:
    """Return the folder of the tiny Stable Diffusion pipeline, building it on first use."""
    folder = models_dir / "tiny-sd"
    if not (folder / "model_index.json").is_file():
        _publish(folder, _build_tiny_sd)
    return folder


def _build_tiny_clip(folder: Path) -> None:
    register_model_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model(TINY_CLIP_ARCH, pretrained=None)
    # open_clip's load_checkpoint reads .safetensors directly when given the file as `pretrained=`.
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, folder / "open_clip_model.safetensors")


def ensure_tiny_clip(models_dir: Path) -> Path:
    """Return the checkpoint file of the tiny open_clip model, building it on first use."""
    folder = models_dir / "tiny-clip"
    checkpoint = folder / "open_clip_model.safetensors"
    if not checkpoint.is_file():
        _publish(folder, _build_tiny_clip)
    return checkpoint
