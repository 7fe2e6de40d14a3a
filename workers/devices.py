"""Which torch device and dtype a worker runs its models on."""

from __future__ import annotations

import re

import torch

from tipai_queue.settings import DEVICE_PATTERN

_DEVICE = re.compile(DEVICE_PATTERN)


def pick_device(requested: str) -> str:
    """Resolve a device setting ("auto", "cpu", "cuda", "cuda:N") to a torch device string."""
    if not _DEVICE.match(requested):
        raise ValueError(f"unknown device {requested!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def usable_device(requested: str) -> str:
    """``pick_device``, refusing a CUDA device torch cannot use here (no GPU, an index past the GPUs it sees, or a
    CPU-only build of torch), for commands and workers that should say so before they start rather than fail at the
    first tensor. An explicit device is checked with ``torch.cuda.device_count``, which asks NVML where it can and
    so leaves CUDA uninitialised: a worker's parent checks before it forks its pool."""
    device = pick_device(requested)
    if device.startswith("cuda"):
        index, seen = int(device.partition(":")[2] or 0), torch.cuda.device_count()
        if index >= seen:
            sees = "no CUDA GPU" if seen == 0 else f"only {seen} CUDA GPU(s), cuda:0 to cuda:{seen - 1},"
            raise ValueError(f"{device} was asked for, but torch {torch.__version__} sees {sees} on this machine: "
                             "use 'cpu' or 'auto'")
    return device


def check_explicit_device(requested: str) -> None:
    """``usable_device``'s ValueError for an explicit device this machine cannot use. "auto" is not checked: it
    falls back to the CPU, and torch's test for it may initialise CUDA, which a worker's parent must not do before
    it forks its pool."""
    if requested != "auto":
        usable_device(requested)


def dtype_for(device: str | torch.device) -> torch.dtype:
    # Half precision halves GPU memory and is what SD/CLIP weights are usually shipped in; many CPU kernels
    # are missing or slow in float16, so the CPU stays in float32.
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32
