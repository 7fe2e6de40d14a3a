"""Multiscale: overlapping crops at several scales, each scored against the prompt, averaged per pixel.

A crop of a 5×5 split sees little context, one of a 2×2 split sees whole objects; averaging them keeps the
resolution of the small crops without trusting any single one. Each scale's scores are standardised within the
image first, because larger crops have systematically higher cosines and would otherwise drown the small ones.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from workers.localize.common import encode_images, encode_texts, pool_to_grid

SCALES = (2, 3, 5)


def crop_boxes(width: int, height: int, scale: int) -> list[tuple[int, int, int, int]]:
    """Windows 1/scale of the image wide and high, at half-window stride: 2·scale − 1 positions per axis."""
    steps = 2 * scale - 1
    xs = [round(i * width / (2 * scale)) for i in range(steps)]
    ys = [round(i * height / (2 * scale)) for i in range(steps)]
    w, h = round(width / scale), round(height / scale)
    return [(x, y, min(x + w, width), min(y + h, height)) for y in ys for x in xs]


def localize(scorer, image: Image.Image, prompt: str, grid: int) -> tuple[float, np.ndarray]:
    image = image.convert("RGB")
    boxes = {scale: crop_boxes(image.width, image.height, scale) for scale in SCALES}
    crops = [image] + [image.crop(box) for scale in SCALES for box in boxes[scale]]
    cosines = (encode_images(scorer, crops) @ encode_texts(scorer, [prompt])[0]).numpy()
    total = np.zeros((image.height, image.width))
    count = np.zeros_like(total)
    start = 1
    for scale in SCALES:
        scores = cosines[start:start + len(boxes[scale])]
        start += len(boxes[scale])
        scores = (scores - scores.mean()) / (scores.std() or 1.0)
        for value, (left, top, right, bottom) in zip(scores, boxes[scale]):
            total[top:bottom, left:right] += value
            count[top:bottom, left:right] += 1
    return float(cosines[0]), pool_to_grid(total / np.maximum(count, 1), grid)
