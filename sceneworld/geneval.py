"""GenEval-style score of a generator: the share of its images of the mini prompts in which the mini CLIP reads
every object's kind, named colour and count as the prompt says."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from sceneworld.captions import parse
from sceneworld.zeroshot import passes
from workers.generation import Generator
from workers.scoring import Scorer


def geneval(
    generator: Generator, scorer: Scorer, prompts: Path, seeds: list[int], steps: int, guidance: float
) -> dict[str, float]:
    results: dict[str, list[bool]] = defaultdict(list)
    for entry in json.loads(prompts.read_text()):
        caption = parse(entry["prompt"])
        for image in generator.generate(entry["prompt"], seeds, 64, 64, steps, guidance):
            ok = passes(scorer, image, caption)
            results[entry["category"]].append(ok)
            results["overall"].append(ok)
    return {name: float(np.mean(oks)) for name, oks in results.items()}
