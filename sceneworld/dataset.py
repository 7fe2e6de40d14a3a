"""Rendered training sets: many scenes drawn from a seed, kept in memory as uint8 pixels and caption texts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sceneworld.counterfactual import violating
from sceneworld.odd_one import odd_one_samples
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


def with_odd_ones(data: SceneSet, repeats: int, rng: np.random.Generator) -> SceneSet:
    """``data`` followed by ``repeats`` odd-one scenes for each of its scenes with a counted group."""
    odd = odd_one_samples(data.samples, repeats, rng)
    if not odd:
        return data
    size = data.pixels.shape[-1]
    return SceneSet(data.samples + odd, torch.cat([data.pixels, _pixels([s.layout.scene for s in odd], size)]))


def render_counterfactuals(data: SceneSet, seed: int, size: int = IMAGE_SIZE) -> torch.Tensor:
    """For each scene, one scene one object away of which its caption is false, (N, 3, H, W) uint8."""
    rng = np.random.default_rng(seed)
    return _pixels([violating(s, rng) for s in data.samples], size)
