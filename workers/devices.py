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


def dtype_for(device: str | torch.device) -> torch.dtype:
    # Half precision halves GPU memory and is what SD/CLIP weights are usually shipped in; many CPU kernels
    # are missing or slow in float16, so the CPU stays in float32.
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32
