"""Where an image disagrees with its prompt: several localization methods behind one interface.

Every method maps (scorer, image, prompt, grid) to the global cosine of image and prompt and a (grid, grid) map,
row-major from the top-left, higher where the image agrees with the prompt. docs/localization.md compares them.
Each method is a module of this package, imported only when used, so validating a method name costs no torch
import.
"""

from __future__ import annotations

import importlib

import numpy as np
from PIL import Image

METHODS = ("grid", "occlusion", "multiscale", "dense", "phrases")


def check_method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"unknown localization method {name!r}; choose one of: {', '.join(METHODS)}")
    return name


def score(scorer, image: Image.Image, prompt: str, grid: int, method: str) -> tuple[float, np.ndarray]:
    """The global cosine of image and prompt, and the method's (grid, grid) map."""
    module = importlib.import_module(f"workers.localize.{check_method(method)}")
    global_cosine, cells = module.localize(scorer, image, prompt, grid)
    if cells.shape != (grid, grid) or not np.all(np.isfinite(cells)):
        raise ValueError(f"method {method} gave a {cells.shape} map with non-finite values for a {grid}×{grid} grid")
    return global_cosine, cells


def localize(scorer, image: Image.Image, prompt: str, grid: int, method: str) -> np.ndarray:
    """The (grid, grid) map, higher where the image agrees with the prompt."""
    return score(scorer, image, prompt, grid, method)[1]
