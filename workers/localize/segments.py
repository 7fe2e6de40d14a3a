"""Segments of an image, for spreading a pixel map over the regions it touches.

A gradient's magnitude is strongest on an object's outline, patchy inside it, and leaks onto the background next to
the outline. Averaged within each segment of the image (the idea of XRAI, Kapishnikov et al. 2019: attribute to
regions, not to pixels), an object's inside gets one value, its own mean (its rim, blurred by the smoothing, is
often a thin segment of its own), and the background's large segments dilute what leaked onto them. The phrases
method's salience is averaged this way before it is pooled to cells (workers/localize/phrases.py says what that
gained).

It runs on the CPU whatever the scorer's device: about 2 ms for the mini scorer's 64-pixel input, 30 ms for a
224-pixel one (one core). The parameters below are in pixels and were chosen at 64.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import felzenszwalb

# Felzenszwalb and Huttenlocher's graph segmentation, in pixels of the scorer's input. Scales from 150 to 300 scored
# alike on the localization benchmark (a mini scene at 64 pixels becomes its objects, the ground and the sky); 50
# split objects into parts and scored a little lower. sigma smooths the image first: without it the benchmark's
# scenes scored the same, but the mini generator's noisy images split into a fifth more segments. min_size merges
# specks.
SCALE = 200
SIGMA = 0.5
MIN_SIZE = 8


def segment(pixels: np.ndarray) -> np.ndarray:
    """(H, W) integer labels of an (H, W, 3) image with values in 0..1."""
    return felzenszwalb(pixels, scale=SCALE, sigma=SIGMA, min_size=MIN_SIZE)


def region_means(maps: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, H, W): each map's mean over each segment, painted over that segment."""
    flat = labels.ravel()
    counts = np.bincount(flat)
    means = [np.bincount(flat, weights=m.ravel().astype(np.float64)) / np.maximum(counts, 1) for m in maps]
    return np.stack([m[labels] for m in means])
