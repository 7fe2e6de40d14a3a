"""Contact sheets for the docs: rendered scenes of the world with their captions, the mini SD's VAE
reconstructions of held-out scenes, and the mini SD's images of the mini prompts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from sceneworld.dataset import render_set
from sceneworld.mini_sd import reconstruct, reconstruction_error
from sceneworld.sampling import CATEGORIES, sample
from sceneworld.scene import render


def _sheet(images: list[Image.Image], titles: list[str], columns: int, path: Path) -> None:
    rows = -(-len(images) // columns)
    fig = Figure(figsize=(1.6 * columns, 1.95 * rows), dpi=90, layout="constrained")
    for index, (image, title) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(rows, columns, index + 1)
        ax.imshow(image, interpolation="nearest")
        ax.set_title(textwrap.fill(title, 24), fontsize=6.5)
        ax.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def world_sheet(path: Path, seed: int = 11, count: int = 20) -> None:
    rng = np.random.default_rng(seed)
    samples = [sample(rng, CATEGORIES[k % len(CATEGORIES)]) for k in range(count)]
    _sheet([render(s.layout.scene).image for s in samples], [s.caption.text() for s in samples], 5, path)


def vae_sheet(path: Path, vae, seed: int, count: int = 8) -> float:
    """Top row: held-out scenes; bottom row: what the VAE decodes from their latents. Returns the mean error."""
    pixels = render_set(count, seed).pixels
    reconstructed = reconstruct(vae.float(), pixels)
    rows = [torch.cat(list(batch), dim=2) for batch in (pixels, reconstructed)]
    sheet = Image.fromarray(torch.cat(rows, dim=1).permute(1, 2, 0).numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.resize((sheet.width * 2, sheet.height * 2), Image.NEAREST).save(path)
    return reconstruction_error(pixels, reconstructed)


def generated_sheet(path: Path, generator, prompts: Path, seeds: list[int], steps: int, guidance: float) -> None:
    images, titles = [], []
    for entry in json.loads(prompts.read_text()):
        for seed, image in zip(seeds, generator.generate(entry["prompt"], seeds, 64, 64, steps, guidance)):
            images.append(image)
            titles.append(f"{entry['prompt']} (seed {seed})" if seed == seeds[0] else f"seed {seed}")
    _sheet(images, titles, 2 * len(seeds), path)
