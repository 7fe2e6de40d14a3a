"""Rendered training sets: many scenes drawn from a seed, kept in memory as uint8 pixels and caption texts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sceneworld.counterfactual import violating
from sceneworld.sampling import Sample, sample
from sceneworld.scene import render

IMAGE_SIZE = 64


@dataclass
class SceneSet:
    samples: list[Sample]
    pixels: torch.Tensor  # (N, 3, H, W) uint8

    @property
    def texts(self) -> list[str]:
        return [s.caption.text() for s in self.samples]


def render_set(n: int, seed: int, size: int = IMAGE_SIZE) -> SceneSet:
    rng = np.random.default_rng(seed)
    samples = [sample(rng) for _ in range(n)]
    pixels = np.stack([np.asarray(render(s.layout.scene, size).image) for s in samples])
    return SceneSet(samples, torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())


def render_counterfactuals(data: SceneSet, seed: int, size: int = IMAGE_SIZE) -> torch.Tensor:
    """For each scene, one scene one object away of which its caption is false, (N, 3, H, W) uint8."""
    rng = np.random.default_rng(seed)
    pixels = np.stack([np.asarray(render(violating(s, rng), size).image) for s in data.samples])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
