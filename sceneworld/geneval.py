"""GenEval-style score of a generator: the share of its images of the mini prompts in which the mini CLIP reads
every object's kind, named colour and count as the prompt says.

The reader is imperfect (relations 0.60 zero-shot, counts 0.90), so the same score of *rendered* scenes, each
true of its prompt by construction, is the most a generator can reach: ``reference`` measures it, and a
generator's score means most as a share of it."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from sceneworld.captions import Caption, parse
from sceneworld.layout import layout
from sceneworld.scene import render
from sceneworld.vocab import BACKGROUNDS, COLOURS
from sceneworld.zeroshot import passes
from workers.generation import Generator
from workers.scoring import Scorer

# Scenes of the reference are drawn apart from the training scenes' seeds.
REFERENCE_SEED = 2_000_003


def verdicts(
    generator: Generator, scorer: Scorer, prompts: Path, seeds: list[int], steps: int, guidance: float
) -> dict[str, list[bool]]:
    """Whether each image passes, by prompt id, in the order of ``seeds``: the same images of two generators can be
    compared one by one. Each prompt's seeds are drawn in one call."""
    result = {}
    for entry in json.loads(prompts.read_text()):
        caption = parse(entry["prompt"])
        result[entry["id"]] = [passes(scorer, image, caption)
                               for image in generator.generate(entry["prompt"], seeds, 64, 64, steps, guidance)]
    return result


def by_category(prompts: Path, passed: dict[str, list[bool]]) -> dict[str, float]:
    results: dict[str, list[bool]] = defaultdict(list)
    for entry in json.loads(prompts.read_text()):
        results[entry["category"]] += passed[entry["id"]]
        results["overall"] += passed[entry["id"]]
    return {name: float(np.mean(oks)) for name, oks in results.items()}


def geneval(
    generator: Generator, scorer: Scorer, prompts: Path, seeds: list[int], steps: int, guidance: float
) -> dict[str, float]:
    return by_category(prompts, verdicts(generator, scorer, prompts, seeds, steps, guidance))


def true_scene(caption: Caption, rng: np.random.Generator) -> Image.Image:
    """A rendered scene of which the caption is true; colours and background it leaves open are drawn at random."""
    groups = tuple(replace(g, colour=g.colour or str(rng.choice(list(COLOURS)))) for g in caption.groups)
    full = replace(caption, groups=groups, background=caption.background or str(rng.choice(list(BACKGROUNDS))))
    return render(layout(full, rng).scene).image


def reference(scorer: Scorer, prompts: Path, seeds: list[int]) -> dict[str, float]:
    """The GenEval-style score of a perfect generator: rendered scenes true of each prompt, one per seed."""
    passed = {}
    for entry in json.loads(prompts.read_text()):
        caption = parse(entry["prompt"])
        scenes = [true_scene(caption, np.random.default_rng((REFERENCE_SEED, seed))) for seed in seeds]
        passed[entry["id"]] = [passes(scorer, scene, caption) for scene in scenes]
    return by_category(prompts, passed)
