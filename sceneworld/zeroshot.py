"""Reading a scene with CLIP zero-shot: which of a few captions, each changing one thing, fits the image best.

Used both to measure the mini CLIP on held-out scenes (kind, colour binding, count, relation, background) and to
judge the mini SD's images GenEval-style (do object, colour and count match the prompt)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from sceneworld.captions import Caption, Group
from sceneworld.layout import layout
from sceneworld.sampling import random_caption
from sceneworld.scene import render
from sceneworld.vocab import BACKGROUNDS, COLOURS, KINDS, MAX_COUNT, RELATIONS
from workers.devices import dtype_for
from workers.scoring import Scorer

ASPECTS = ("kind", "colour", "count", "relation", "background")


def _features(scorer: Scorer, images: list[Image.Image], texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-length float32 embeddings of the images and of the texts."""
    pixels = torch.stack([scorer.preprocess(image.convert("RGB")) for image in images])
    # A scorer on a GPU holds half-precision weights (workers/devices.py).
    pixels = pixels.to(scorer.device, dtype_for(scorer.device))
    with torch.inference_mode():
        image_features = scorer.model.encode_image(pixels, normalize=True).float()
        text_features = scorer.model.encode_text(scorer.tokenizer(texts).to(scorer.device), normalize=True).float()
    return image_features, text_features


def choose(scorer: Scorer, images: list[Image.Image], candidates: list[list[str]]) -> list[int]:
    """For each image, the index of its best-fitting candidate caption."""
    image_features, text_features = _features(scorer, images, [text for texts in candidates for text in texts])
    picks, start = [], 0
    for row, texts in enumerate(candidates):
        cosines = text_features[start : start + len(texts)] @ image_features[row]
        picks.append(int(cosines.argmax()))
        start += len(texts)
    return picks


def _with_group(caption: Caption, index: int, **change) -> Caption:
    groups = list(caption.groups)
    groups[index] = replace(groups[index], **change)
    return replace(caption, groups=tuple(groups))


def _probe(aspect: str, rng: np.random.Generator) -> tuple[Caption, list[Caption], int]:
    """A true caption of a new scene, and candidates varying only ``aspect`` (the true one among them)."""
    background = str(rng.choice(list(BACKGROUNDS)))
    kind, other = (str(k) for k in rng.choice(KINDS, 2, replace=False))
    colour, other_colour = (str(c) for c in rng.choice(list(COLOURS), 2))
    if aspect == "kind":
        full = Caption((Group(kind, colour),), None, background)
        said = Caption((Group(kind),))
        return full, [_with_group(said, 0, kind=k) for k in KINDS], KINDS.index(kind)
    if aspect == "colour":
        full = Caption((Group(kind, colour), Group(other, other_colour)), None, background)
        names = list(COLOURS)
        return full, [_with_group(full, 0, colour=c) for c in names], names.index(colour)
    if aspect == "count":
        count = int(rng.integers(1, MAX_COUNT + 1))
        full = Caption((Group(kind, colour, count),), None, background)
        said = Caption((Group(kind, None, count),))
        return full, [_with_group(said, 0, count=n) for n in range(1, MAX_COUNT + 1)], count - 1
    if aspect == "relation":
        relation = str(rng.choice(RELATIONS))
        full = Caption((Group(kind, colour), Group(other, other_colour)), relation, background)
        said = Caption((Group(kind), Group(other)), relation)
        return full, [replace(said, relation=r) for r in RELATIONS], RELATIONS.index(relation)
    if aspect == "background":
        full = random_caption(rng, str(rng.choice(["object_presence", "attribute_binding", "counting"])))
        full = replace(full, background=background)
        said = replace(full, groups=tuple(replace(g, colour=None) for g in full.groups))
        names = list(BACKGROUNDS)
        return full, [replace(said, background=b) for b in names], names.index(background)
    raise ValueError(aspect)


def heldout_accuracy(scorer: Scorer, per_aspect: int, seed: int) -> dict[str, float]:
    """Zero-shot accuracy per aspect on freshly drawn scenes (seed apart from the training seeds)."""
    rng = np.random.default_rng(seed)
    result = {}
    for aspect in ASPECTS:
        images, candidates, truths = [], [], []
        for _ in range(per_aspect):
            full, options, truth = _probe(aspect, rng)
            images.append(render(layout(full, rng).scene).image)
            candidates.append([c.text() for c in options])
            truths.append(truth)
        picks = choose(scorer, images, candidates)
        result[aspect] = float(np.mean([p == t for p, t in zip(picks, truths)]))
    return result


def prompt_checks(caption: Caption) -> list[tuple[list[str], int]]:
    """GenEval-style checks of an image against its prompt: for every object group, its kind, its colour if
    the prompt names one, and its count; each check is (candidate captions, index of the prompt's)."""
    checks = []
    for index, group in enumerate(caption.groups):
        others = {g.kind for g in caption.groups} - {group.kind}
        kinds = [k for k in KINDS if k not in others]
        checks.append(([_with_group(caption, index, kind=k).text() for k in kinds], kinds.index(group.kind)))
        if group.colour:
            names = list(COLOURS)
            checks.append(([_with_group(caption, index, colour=c).text() for c in names], names.index(group.colour)))
        if caption.relation is None:
            counts = range(1, MAX_COUNT + 1)
            checks.append(([_with_group(caption, index, count=n).text() for n in counts], group.count - 1))
    return checks


@dataclass(frozen=True)
class Reading:
    share: float  # of the prompt's checks the image passes
    log_probability: float  # of the prompt's own candidate among each check's, averaged over the checks


def readings(scorer: Scorer, images: list[Image.Image], caption: Caption) -> list[Reading]:
    """How well each image of one prompt passes the prompt's checks, with the texts encoded once for all of them."""
    checks = prompt_checks(caption)
    image_features, text_features = _features(scorer, images, [text for texts, _ in checks for text in texts])
    with torch.inference_mode():
        logits = scorer.model.logit_scale.exp().float() * image_features @ text_features.T
    result = []
    for row in logits:
        start, passed, log_probability = 0, 0, 0.0
        for texts, truth in checks:
            own = row[start : start + len(texts)]
            passed += int(own.argmax()) == truth
            log_probability += float(torch.log_softmax(own, 0)[truth])
            start += len(texts)
        result.append(Reading(passed / len(checks), log_probability / len(checks)))
    return result


def passes(scorer: Scorer, image: Image.Image, caption: Caption) -> bool:
    return readings(scorer, [image], caption)[0].share == 1.0
