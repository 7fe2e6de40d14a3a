"""Text-to-image generation with diffusers, loaded once per worker process and reused for every task."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import constants as hub_constants
from PIL import Image
from transformers.utils import logging as transformers_logging

from tipai_queue.model_specs import BUILTIN_TINY_SD, HUB_ID
from workers.devices import dtype_for
from workers.errors import ModelUnavailable
from workers.tiny import ensure_tiny_sd


class Generator:
    """A diffusers pipeline on one device. The same (prompt, seed, model, size, steps, guidance) always gives the
    same pixels on the same device for the same grouping of seeds into calls; each seed has its own noise."""

    def __init__(self, spec: str, device: str, pipe: DiffusionPipeline) -> None:
        self.spec = spec
        self.device = device
        self.pipe = pipe

    def generate(
        self, prompt: str, seeds: list[int], width: int, height: int, steps: int, guidance: float
    ) -> list[Image.Image]:
        # One generator per image: the initial noise of each image depends only on its own seed, not on its
        # position in the batch.
        generators = [torch.Generator(self.device).manual_seed(seed) for seed in seeds]
        with torch.inference_mode():
            # Pipelines truncate prompts longer than the text encoder's context to fit (with a logged warning).
            output = self.pipe(
                prompt=[prompt] * len(seeds),
                width=width,
                height=height,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generators,
                output_type="pil",
            )
        return output.images


def _from_pretrained(source: str | Path, device: str, local_files_only: bool) -> DiffusionPipeline:
    # Loading bars are noise in a worker log; the log line that matters is the task's.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    return DiffusionPipeline.from_pretrained(
        source,
        dtype=dtype_for(device),
        local_files_only=local_files_only,
        # Generated images are scored, not shown to the public; the checker would also blank out failures.
        safety_checker=None,
        requires_safety_checker=False,
        # What the default (True) asks of `accelerate` buys nothing here: without it diffusers 0.42 loaded a
        # 1.7 GB SD-1.5-size UNet in 0.17 s either way. Saying so keeps its install-accelerate warning out of
        # every worker log.
        low_cpu_mem_usage=False,
    )


def _load_from_hub(model_id: str, device: str) -> DiffusionPipeline:
    try:
        return _from_pretrained(model_id, device, local_files_only=True)
    except OSError as missing:
        if hub_constants.HF_HUB_OFFLINE:
            raise ModelUnavailable.generator(
                model_id, "the hub is unreachable (HF_HUB_OFFLINE=1)"
            ) from missing
    # huggingface_hub bounds each request (HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT, 10 s by default), so an
    # unreachable hub fails here instead of hanging the worker.
    try:
        return _from_pretrained(model_id, device, local_files_only=False)
    except OSError as failed:
        raise ModelUnavailable.generator(model_id, f"downloading it failed ({failed})") from failed


def load_generator(spec: str, device: str, models_dir: Path) -> Generator:
    """Load a generator: "builtin:tiny-sd", a local diffusers folder, or a Hugging Face model id."""
    if spec == BUILTIN_TINY_SD:
        pipe = _from_pretrained(ensure_tiny_sd(models_dir), device, local_files_only=True)
    elif Path(spec).expanduser().is_dir():
        pipe = _from_pretrained(Path(spec).expanduser(), device, local_files_only=True)
    elif HUB_ID.match(spec):
        pipe = _load_from_hub(spec, device)
    else:
        raise ModelUnavailable(f"generator {spec!r} is neither a local folder nor a Hugging Face model id")
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return Generator(spec, device, pipe)
