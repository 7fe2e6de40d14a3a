"""Rendered training sets: many scenes drawn from a seed, kept in memory as uint8 pixels and caption texts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sceneworld.counterfactual import violating
from sceneworld.sampling import Sample, sample
from sceneworld.scene import Scene, render

IMAGE_SIZE = 64


@dataclass
class SceneSet:
    samples: list[Sample]
    pixels: torch.Tensor  # (N, 3, H, W) uint8

    @property
    def texts(self) -> list[str]:
        return [s.caption.text() for s in self.samples]


def _pixels(scenes: list[Scene], size: int) -> torch.Tensor:
    pixels = np.stack([np.asarray(render(scene, size).image) for scene in scenes])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def render_set(n: int, seed: int, size: int = IMAGE_SIZE) -> SceneSet:
    rng = np.random.default_rng(seed)
    samples = [sample(rng) for _ in range(n)]
    return SceneSet(samples, _pixels([s.layout.scene for s in samples], size))


def with_samples(data: SceneSet, extra: list[Sample]) -> SceneSet:
    """``data`` followed by ``extra``, rendered at its size."""
    if not extra:
        return data
    size = data.pixels.shape[-1]
    return SceneSet(data.samples + extra, torch.cat([data.pixels, _pixels([s.layout.scene for s in extra], size)]))


def render_counterfactuals(data: SceneSet, seed: int, size: int = IMAGE_SIZE) -> torch.Tensor:
    """For each scene, one scene one object away of which its caption is false, (N, 3, H, W) uint8."""
    rng = np.random.default_rng(seed)
    return _pixels([violating(s, rng) for s in data.samples], size)
