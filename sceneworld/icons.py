"""Simple, recognisable icons of every object kind, drawn with PIL into a box.

Each icon is drawn twice with the same geometry: once in colour into the scene, once in 255 into the object's mask,
so the mask is exactly the pixels the object paints.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import ImageDraw

Colour = tuple[int, int, int] | int

# Width over height of each kind's box.
ASPECT = {
    "car": 1.6, "house": 1.0, "apple": 0.9, "banana": 1.5, "ball": 1.0, "balloon": 0.7,
    "box": 1.0, "chair": 0.75, "cat": 1.0, "dog": 1.3, "tree": 0.8, "cup": 1.0,
}


@dataclass(frozen=True)
class Palette:
    body: Colour  # the named colour of the object
    light: Colour
    dark: Colour
    outline: Colour
    # Parts whose colour belongs to the kind, not to the object: wheels, trunks, windows, stems.
    wheel: Colour = (35, 35, 35)
    wood: Colour = (110, 70, 35)
    glass: Colour = (190, 225, 245)
    leaf: Colour = (50, 140, 50)
    eye: Colour = (20, 20, 20)


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    if factor >= 1:
        return tuple(round(c + (255 - c) * (factor - 1)) for c in rgb)  # type: ignore[return-value]
    return tuple(round(c * factor) for c in rgb)  # type: ignore[return-value]


def colour_palette(rgb: tuple[int, int, int]) -> Palette:
    # A black object needs a lighter outline, or its edge disappears.
    outline = (110, 110, 110) if sum(rgb) < 150 else (30, 30, 30)
    return Palette(body=rgb, light=_shade(rgb, 1.35), dark=_shade(rgb, 0.65), outline=outline)


MASK_PALETTE = Palette(255, 255, 255, 255, 255, 255, 255, 255, 255)


class _Pen:
    """Draws in box coordinates: u runs 0..1 left to right, v 0..1 top to bottom."""

    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], palette: Palette) -> None:
        self.draw, self.p = draw, palette
        self.x0, self.y0, x1, y1 = box
        self.w, self.h = x1 - self.x0, y1 - self.y0
        self.line_w = max(1, round(min(self.w, self.h) / 22))

    def xy(self, u: float, v: float) -> tuple[float, float]:
        return (self.x0 + u * self.w, self.y0 + v * self.h)

    def box(self, u0: float, v0: float, u1: float, v1: float) -> list[tuple[float, float]]:
        return [self.xy(u0, v0), self.xy(u1, v1)]

    def poly(self, points: list[tuple[float, float]], fill: Colour) -> None:
        self.draw.polygon([self.xy(u, v) for u, v in points], fill=fill, outline=self.p.outline, width=self.line_w)

    def ellipse(self, u0: float, v0: float, u1: float, v1: float, fill: Colour) -> None:
        self.draw.ellipse(self.box(u0, v0, u1, v1), fill=fill, outline=self.p.outline, width=self.line_w)

    def rect(self, u0: float, v0: float, u1: float, v1: float, fill: Colour) -> None:
        self.draw.rectangle(self.box(u0, v0, u1, v1), fill=fill, outline=self.p.outline, width=self.line_w)

    def line(self, points: list[tuple[float, float]], fill: Colour, width: float = 1.0) -> None:
        self.draw.line([self.xy(u, v) for u, v in points], fill=fill, width=max(1, round(self.line_w * width)))


def _car(pen: _Pen) -> None:
    p = pen.p
    pen.poly([(0.22, 0.42), (0.32, 0.08), (0.7, 0.08), (0.82, 0.42)], p.body)
    pen.poly([(0.3, 0.4), (0.37, 0.15), (0.49, 0.15), (0.49, 0.4)], p.glass)
    pen.poly([(0.54, 0.4), (0.54, 0.15), (0.66, 0.15), (0.74, 0.4)], p.glass)
    pen.rect(0.0, 0.4, 1.0, 0.8, p.body)
    pen.ellipse(0.12, 0.62, 0.36, 1.0, p.wheel)
    pen.ellipse(0.64, 0.62, 0.88, 1.0, p.wheel)


def _house(pen: _Pen) -> None:
    p = pen.p
    pen.rect(0.12, 0.42, 0.88, 1.0, p.body)
    pen.poly([(0.0, 0.45), (0.5, 0.0), (1.0, 0.45)], p.dark)
    pen.rect(0.42, 0.66, 0.6, 1.0, p.wood)
    pen.rect(0.2, 0.55, 0.35, 0.7, p.glass)
    pen.rect(0.67, 0.55, 0.82, 0.7, p.glass)


def _apple(pen: _Pen) -> None:
    p = pen.p
    pen.ellipse(0.0, 0.2, 0.6, 1.0, p.body)
    pen.ellipse(0.4, 0.2, 1.0, 1.0, p.body)
    pen.draw.ellipse(pen.box(0.12, 0.3, 0.88, 0.95), fill=p.body)
    pen.line([(0.5, 0.3), (0.55, 0.02)], p.wood, 1.6)
    pen.poly([(0.56, 0.12), (0.8, 0.0), (0.9, 0.1), (0.65, 0.2)], p.leaf)


def _banana(pen: _Pen) -> None:
    p = pen.p
    steps = [math.pi * k / 14 for k in range(15)]
    # A sagging crescent: the lower half of a wide ellipse minus a flatter one.
    outer = [(0.5 + 0.5 * math.cos(t), 0.05 + 0.95 * math.sin(t)) for t in steps]
    inner = [(0.5 + 0.44 * math.cos(t), 0.05 + 0.72 * math.sin(t)) for t in reversed(steps)]
    pen.poly(outer + inner, p.body)
    pen.line([(0.0, 0.05), (0.04, 0.0)], p.wood, 2.0)
    pen.line([(1.0, 0.05), (0.96, 0.0)], p.wood, 2.0)


def _ball(pen: _Pen) -> None:
    p = pen.p
    pen.ellipse(0.0, 0.0, 1.0, 1.0, p.body)
    pen.draw.arc(pen.box(-0.45, 0.1, 0.55, 0.9), -60, 60, fill=p.light, width=pen.line_w * 2)
    pen.draw.arc(pen.box(0.45, 0.1, 1.45, 0.9), 120, 240, fill=p.light, width=pen.line_w * 2)


def _balloon(pen: _Pen) -> None:
    p = pen.p
    pen.line([(0.5, 0.72), (0.45, 0.85), (0.55, 0.93), (0.5, 1.0)], p.outline)
    pen.poly([(0.5, 0.7), (0.42, 0.78), (0.58, 0.78)], p.body)
    pen.ellipse(0.0, 0.0, 1.0, 0.74, p.body)
    pen.ellipse(0.2, 0.12, 0.38, 0.3, p.light)


def _box(pen: _Pen) -> None:
    p = pen.p
    pen.poly([(0.0, 0.28), (0.22, 0.0), (1.0, 0.0), (0.78, 0.28)], p.light)
    pen.poly([(0.78, 0.28), (1.0, 0.0), (1.0, 0.78), (0.78, 1.0)], p.dark)
    pen.rect(0.0, 0.28, 0.78, 1.0, p.body)


def _chair(pen: _Pen) -> None:
    p = pen.p
    pen.rect(0.0, 0.0, 0.3, 0.6, p.body)
    pen.rect(0.0, 0.45, 1.0, 0.66, p.body)
    pen.rect(0.02, 0.66, 0.2, 1.0, p.dark)
    pen.rect(0.8, 0.66, 0.98, 1.0, p.dark)


def _cat(pen: _Pen) -> None:
    p = pen.p
    pen.line([(0.78, 0.85), (0.98, 0.6), (0.92, 0.35)], p.body, 3.0)
    pen.ellipse(0.25, 0.45, 0.9, 1.0, p.body)
    pen.poly([(0.05, 0.2), (0.1, 0.0), (0.22, 0.15)], p.body)
    pen.poly([(0.3, 0.15), (0.42, 0.0), (0.47, 0.2)], p.body)
    pen.ellipse(0.0, 0.08, 0.5, 0.55, p.body)
    pen.draw.ellipse(pen.box(0.12, 0.25, 0.19, 0.33), fill=p.eye)
    pen.draw.ellipse(pen.box(0.3, 0.25, 0.37, 0.33), fill=p.eye)


def _dog(pen: _Pen) -> None:
    p = pen.p
    pen.line([(0.12, 0.45), (0.0, 0.2)], p.body, 3.0)
    for u in (0.15, 0.3, 0.55, 0.68):
        pen.rect(u, 0.6, u + 0.1, 1.0, p.body)
    pen.ellipse(0.05, 0.35, 0.8, 0.75, p.body)
    pen.ellipse(0.6, 0.05, 1.0, 0.5, p.body)
    pen.poly([(0.62, 0.12), (0.7, 0.08), (0.68, 0.45), (0.58, 0.38)], p.dark)
    pen.draw.ellipse(pen.box(0.93, 0.27, 1.0, 0.35), fill=p.eye)
    pen.draw.ellipse(pen.box(0.78, 0.17, 0.84, 0.24), fill=p.eye)


def _tree(pen: _Pen) -> None:
    p = pen.p
    pen.rect(0.4, 0.55, 0.6, 1.0, p.wood)
    pen.ellipse(0.0, 0.2, 0.55, 0.7, p.body)
    pen.ellipse(0.45, 0.2, 1.0, 0.7, p.body)
    pen.ellipse(0.15, 0.0, 0.85, 0.55, p.body)


def _cup(pen: _Pen) -> None:
    p = pen.p
    pen.draw.ellipse(pen.box(0.6, 0.25, 1.0, 0.7), outline=p.body, width=max(2, pen.line_w * 3))
    pen.poly([(0.0, 0.12), (0.75, 0.12), (0.66, 1.0), (0.09, 1.0)], p.body)
    pen.ellipse(0.0, 0.04, 0.75, 0.2, p.dark)


DRAWERS: dict[str, Callable[[_Pen], None]] = {
    "car": _car, "house": _house, "apple": _apple, "banana": _banana, "ball": _ball, "balloon": _balloon,
    "box": _box, "chair": _chair, "cat": _cat, "dog": _dog, "tree": _tree, "cup": _cup,
}


def draw_icon(draw: ImageDraw.ImageDraw, kind: str, box: tuple[float, float, float, float], palette: Palette) -> None:
    DRAWERS[kind](_Pen(draw, box, palette))
