"""A scene is a background and objects in boxes; rendering gives the image and each object's visible mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from sceneworld.icons import ASPECT, MASK_PALETTE, colour_palette, draw_icon
from sceneworld.vocab import COLOURS

# Drawn at this multiple of the output size and downsampled, so edges are smooth rather than jagged.
SUPERSAMPLE = 2


@dataclass(frozen=True)
class Thing:
    kind: str
    colour: str
    x: float  # horizontal centre, 0..1 of the image width
    bottom: float  # lower edge, 0..1 of the image height
    height: float  # 0..1 of the image height; the width follows from the kind's aspect

    @property
    def width(self) -> float:
        return self.height * ASPECT[self.kind]

    @property
    def left(self) -> float:
        return self.x - self.width / 2

    @property
    def right(self) -> float:
        return self.x + self.width / 2

    @property
    def top(self) -> float:
        return self.bottom - self.height


@dataclass(frozen=True)
class Scene:
    background: str
    things: tuple[Thing, ...]  # drawn in order: later things cover earlier ones


@dataclass(frozen=True)
class Rendered:
    image: Image.Image
    masks: np.ndarray  # (n_things, H, W) bool: the pixels of each thing left visible after the later ones


def _background(draw: ImageDraw.ImageDraw, name: str, size: int) -> None:
    s = size

    def band(top: float, bottom: float, rgb: tuple[int, int, int]) -> None:
        draw.rectangle([0, round(top * s), s, round(bottom * s)], fill=rgb)

    if name == "beach":
        band(0, 0.5, (135, 200, 240))
        band(0.5, 0.58, (40, 120, 190))
        band(0.58, 1, (235, 215, 160))
    elif name == "park":
        band(0, 0.48, (165, 212, 245))
        band(0.48, 1, (100, 175, 85))
        for u in (0.15, 0.5, 0.85):
            draw.ellipse([(u - 0.2) * s, 0.4 * s, (u + 0.2) * s, 0.56 * s], fill=(80, 150, 70))
    elif name == "sky":
        for row in range(s):
            t = row / s
            draw.line([(0, row), (s, row)], fill=(round(70 + 100 * t), round(130 + 80 * t), round(220 + 30 * t)))
        for u, v in ((0.2, 0.15), (0.75, 0.28)):
            draw.ellipse([(u - 0.13) * s, (v - 0.05) * s, (u + 0.13) * s, (v + 0.05) * s], fill=(225, 232, 245))
    elif name == "table":
        band(0, 0.42, (228, 222, 205))
        band(0.42, 1, (150, 100, 55))
        for v in (0.55, 0.7, 0.86):
            draw.line([(0, v * s), (s, (v + 0.03) * s)], fill=(125, 82, 45), width=max(1, s // 64))
    elif name == "mars":
        band(0, 0.45, (70, 35, 45))
        band(0.45, 1, (190, 85, 45))
        for u, v in ((0.2, 0.62), (0.7, 0.8)):
            draw.ellipse([(u - 0.1) * s, (v - 0.03) * s, (u + 0.1) * s, (v + 0.03) * s], fill=(150, 60, 35))
    else:
        raise ValueError(f"unknown background {name!r}")


def render(scene: Scene, size: int = 64) -> Rendered:
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big))
    draw = ImageDraw.Draw(image)
    _background(draw, scene.background, big)
    masks = []
    for thing in scene.things:
        box = (thing.left * big, thing.top * big, thing.right * big, thing.bottom * big)
        draw_icon(draw, thing.kind, box, colour_palette(COLOURS[thing.colour]))
        mask = Image.new("L", (big, big))
        draw_icon(ImageDraw.Draw(mask), thing.kind, box, MASK_PALETTE)
        masks.append(np.asarray(mask.resize((size, size), Image.Resampling.BOX)) >= 128)
    visible = np.zeros((len(masks), size, size), dtype=bool)
    covered = np.zeros((size, size), dtype=bool)
    for index in range(len(masks) - 1, -1, -1):
        visible[index] = masks[index] & ~covered
        covered |= masks[index]
    return Rendered(image.resize((size, size), Image.Resampling.LANCZOS), visible)
