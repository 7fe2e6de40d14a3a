"""The plan's method, kept as the baseline: crop each cell of the grid and score the crop against the whole prompt."""

from __future__ import annotations

import numpy as np
from PIL import Image


def localize(scorer, image: Image.Image, prompt: str, grid: int) -> tuple[float, np.ndarray]:
    result = scorer.score(image, prompt, grid)
    return result.global_cosine, np.asarray(result.patch_cosines, dtype=np.float64).reshape(grid, grid)
