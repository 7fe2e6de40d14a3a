"""Crowded scenes: more scenes whose caption counts four or more of a kind, each laid out anew.

The committed mini CLIP read four objects as five in about half of the localization benchmark's four-object scenes,
so the faithful scene of a "four apples" pair often lost to its corrupted copy with a fifth apple (pair accuracy
0.81 on 198 such pairs, against 0.96 or more for every smaller count; docs/localization.md, "Four or five"). Only
one training scene in thirteen counts that high. Each added scene keeps its caption and draws a new layout, and so
its own counterfactual in stage 2, which adds or removes an instance in two of the four or five edits it draws from
(sceneworld/counterfactual.py): the near counts the tower confuses. A continuation of the committed tower with three
of them per crowded scene read held-out counts at 0.970 (0.945 kept half way, against 0.935) but took the "four"
pairs only to 0.823, and it was not committed (docs/mini.md, "Training the image tower further").
"""

from __future__ import annotations

import numpy as np

from sceneworld.layout import layout
from sceneworld.sampling import Sample

CROWDED = 4  # the least count a caption states for its scene to count as crowded


def crowded_samples(samples: list[Sample], repeats: int, rng: np.random.Generator) -> list[Sample]:
    """``repeats`` new layouts of each sample whose caption states a count of CROWDED or more."""
    crowded = [s for s in samples if any(group.count >= CROWDED for group in s.caption.groups)]
    return [Sample(s.caption, s.full, layout(s.full, rng)) for _ in range(repeats) for s in crowded]
