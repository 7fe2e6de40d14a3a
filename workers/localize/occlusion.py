"""Occlusion: how the global score changes when a window of cells is painted over with the surrounding background.

A window whose removal lowers the score held something the prompt asks for; one whose removal raises it held
something that contradicts the prompt. Windows of 1, 2 and 3 cells (stride one cell) are all scored in one batch
(but those whose painting changes nothing), and a cell takes the mean change of the windows covering it, so an
object larger than a cell still shows up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from workers.localize.common import cell_windows, encode_pixels, encode_texts, window_box, windows_to_cells

WINDOW_SIZES = (1, 2, 3)


@dataclass(frozen=True)
class Occluded:
    """Embeddings of the whole image (row 0) and of each occluded copy (rows 1..), with the windows painted."""

    grid: int
    windows: list[tuple[int, int, int]]
    embeddings: torch.Tensor

    def deltas(self, text_features: torch.Tensor) -> np.ndarray:
        """(texts, windows): cosine of the whole image minus cosine with the window painted over."""
        cosines = (self.embeddings @ text_features.T).T.numpy()
        return cosines[:, :1] - cosines[:, 1:]

    def cells(self, values: np.ndarray) -> np.ndarray:
        return windows_to_cells(values, self.windows, self.grid)


def paint_over(pixels: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """One copy of the (H, W, 3) image per box, the box filled by the median colour of a thin ring around it: a
    cheap background inpaint that, unlike grey or blur, neither adds a new object nor leaves the removed object's
    colour behind."""
    copies = np.repeat(pixels[None], len(boxes), axis=0)
    for copy, (left, top, right, bottom) in zip(copies, boxes):
        pad = max(1, (right - left) // 4)
        ring = np.zeros(pixels.shape[:2], dtype=bool)
        ring[max(0, top - pad):bottom + pad, max(0, left - pad):right + pad] = True
        ring[top:bottom, left:right] = False
        if not ring.any():  # the box is the whole image: nothing around it to copy
            ring[:] = True
        copy[top:bottom, left:right] = np.median(pixels[ring], axis=0).astype(np.uint8)
    return copies


def occlude(scorer, image: Image.Image, grid: int, sizes: tuple[int, ...] = WINDOW_SIZES) -> Occluded:
    pixels = np.asarray(image.convert("RGB"))
    windows = cell_windows(grid, sizes)
    copies = paint_over(pixels, [window_box(w, image.width, image.height, grid) for w in windows])
    # A window that is all the colour it would be painted (a stretch of empty sky) leaves its copy equal to the
    # image, so the copy's embedding is the image's own and needs no forward pass: a quarter of the copies of the
    # mini preset's scenes, whose backgrounds are flat.
    changed = (copies != pixels).any(axis=(1, 2, 3))
    encoded = encode_pixels(scorer, np.concatenate([pixels[None], copies[changed]]))
    embeddings = encoded[:1].repeat(1 + len(windows), 1)
    embeddings[1:][torch.from_numpy(changed)] = encoded[1:]
    return Occluded(grid, windows, embeddings)


def localize(scorer, image: Image.Image, prompt: str, grid: int) -> tuple[float, np.ndarray]:
    occluded = occlude(scorer, image, grid)
    text = encode_texts(scorer, [prompt])
    [deltas] = occluded.deltas(text)
    global_cosine = float(occluded.embeddings[0] @ text[0])
    return global_cosine, occluded.cells(deltas)
