"""Which torch device and dtype a worker runs its models on."""

from __future__ import annotations

import re

import torch

_EXPLICIT_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def pick_device(requested: str) -> str:
    """Resolve a device setting ("auto", "cpu", "cuda", "cuda:N") to a torch device string."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if _EXPLICIT_DEVICE.match(requested):
        return requested
    raise ValueError(f"unknown device {requested!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def usable_device(requested: str) -> str:
    """``pick_device``, refusing a CUDA device torch cannot use here (no GPU, or a CPU-only build of torch), for
    commands that should say so before they start rather than fail at the first tensor."""
    device = pick_device(requested)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{device} was asked for, but torch {torch.__version__} sees no CUDA GPU on this machine: "
                         "use 'cpu' or 'auto'")
    return device


def dtype_for(device: str | torch.device) -> torch.dtype:
    # Half precision halves GPU memory and is what SD/CLIP weights are usually shipped in; many CPU kernels
    # are missing or slow in float16, so the CPU stays in float32.
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32
