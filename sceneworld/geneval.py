"""GenEval-style score of a generator: the share of its images of the mini prompts in which the mini CLIP reads
every object's kind, named colour and count as the prompt says.

The reader is imperfect (relations 0.60 zero-shot, counts 0.90), so the same score of *rendered* scenes, each
true of its prompt by construction, is the most a generator can reach: ``reference`` measures it, and a
generator's score means most as a share of it."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
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


def _score(scorer: Scorer, judged: Iterator[tuple[str, Caption, Image.Image]]) -> dict[str, float]:
    results: dict[str, list[bool]] = defaultdict(list)
    for category, caption, image in judged:
        ok = passes(scorer, image, caption)
        results[category].append(ok)
        results["overall"].append(ok)
    return {name: float(np.mean(oks)) for name, oks in results.items()}


def geneval(
    generator: Generator, scorer: Scorer, prompts: Path, seeds: list[int], steps: int, guidance: float
) -> dict[str, float]:
    def generated():
        for entry in json.loads(prompts.read_text()):
            for image in generator.generate(entry["prompt"], seeds, 64, 64, steps, guidance):
                yield entry["category"], parse(entry["prompt"]), image

    return _score(scorer, generated())


def true_scene(caption: Caption, rng: np.random.Generator) -> Image.Image:
    """A rendered scene of which the caption is true; colours and background it leaves open are drawn at random."""
    groups = tuple(replace(g, colour=g.colour or str(rng.choice(list(COLOURS)))) for g in caption.groups)
    full = replace(caption, groups=groups, background=caption.background or str(rng.choice(list(BACKGROUNDS))))
    return render(layout(full, rng).scene).image


def reference(scorer: Scorer, prompts: Path, seeds: list[int]) -> dict[str, float]:
    """The GenEval-style score of a perfect generator: rendered scenes true of each prompt, one per seed."""
    def rendered():
        for entry in json.loads(prompts.read_text()):
            caption = parse(entry["prompt"])
            for seed in seeds:
                yield entry["category"], caption, true_scene(caption, np.random.default_rng((REFERENCE_SEED, seed)))

    return _score(scorer, rendered())
