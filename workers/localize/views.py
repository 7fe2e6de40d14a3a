"""Views: an image's cosines with a set of texts, averaged over the image and nine copies of it that show the same
scene: its mirror image, read against the texts mirrored (left and right swapped, so "a ball left of a chair" stays
true of it), and the image shifted by 1/64 or 1/32 of its side, the edges repeated.

A scorer's reading of a scene depends a little on where its objects happen to fall; averaged over copies that
move them a pixel or two, that noise partly cancels and what the scene shows remains. The phrases method reads its
judgements so (workers/localize/phrases.py). On three draws of the localization benchmark's pairs (the first
1 200 of seed 20240601, of seed 0 and of seed 1; 3 600 pairs), the faithfulness read this way ranked 41 pairs
right that the image alone ranked wrong and 21 the other way round (two-sided sign test p = 0.015): pair accuracy
0.962 → 0.967, colour swaps 0.956 → 0.970, extra instances 0.938 → 0.942. Shifts alone (0.964) or the mirror alone
(0.964) did less; shifts alone on 300 pairs had been within noise (docs/localization.md).
"""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image

from workers.localize.common import encode_pixels, encode_texts

# (right, down) in 64ths of the image's width and height: a pixel or two of the mini preset's 64-pixel scenes, each
# of the eight neighbouring directions.
SHIFTS = ((-2, 0), (2, 0), (0, -2), (0, 2), (-1, -1), (1, 1), (1, -1), (-1, 1))
_SIDES = re.compile(r"\b(left|right)\b", re.IGNORECASE)
_OTHER_SIDE = {"left": "right", "right": "left"}


def mirrored(text: str) -> str:
    """The text true of the mirror image of a scene it is true of: left and right swapped, their case kept."""

    def swap(match: re.Match) -> str:
        word = match.group(0)
        other = _OTHER_SIDE[word.lower()]
        return other.upper() if word.isupper() else other.capitalize() if word[0].isupper() else other

    return _SIDES.sub(swap, text)


def shifted(pixels: np.ndarray, right: int, down: int) -> np.ndarray:
    """The (H, W, 3) image moved `right` and `down` pixels (negative: left, up), the edge pixels repeated into the
    gap: the background goes on, where black or wrapped-round borders would add something the scene lacks."""
    height, width = pixels.shape[:2]
    pad = max(abs(right), abs(down))
    padded = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return padded[pad - down:pad - down + height, pad - right:pad - right + width]


def copies(image: Image.Image) -> np.ndarray:
    """(1 + len(SHIFTS), H, W, 3): the mirror image, then each shift."""
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    moved = [shifted(pixels, round(right * width / 64), round(down * height / 64)) for right, down in SHIFTS]
    return np.stack([pixels[:, ::-1], *moved])


def view_cosines(scorer, image: Image.Image, embedding: torch.Tensor, texts: list[str],
                 text_features: torch.Tensor) -> np.ndarray:
    """(len(texts),): the mean over the views of each text's cosine with the image. `embedding` is the image's own
    (the phrases method has it from its occlusion batch) and `text_features` the texts'; the copies take one
    forward pass, the mirrored texts another only when some text says left or right."""
    embeddings = encode_pixels(scorer, copies(image))
    mirror_texts = [mirrored(text) for text in texts]
    mirror_features = text_features if mirror_texts == texts else encode_texts(scorer, mirror_texts)
    cosines = torch.cat([(embedding @ text_features.T)[None], (embeddings[:1] @ mirror_features.T),
                         embeddings[1:] @ text_features.T])
    return cosines.mean(dim=0).numpy()
