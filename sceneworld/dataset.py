"""Rendered training sets: many scenes drawn from a seed, kept in memory as uint8 pixels and caption texts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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
