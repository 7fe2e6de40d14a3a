"""Odd-one scenes: a counted group in which one member differs in colour or kind, captioned as the rest of the group
and the odd one ("two red apples and a blue apple").

When one member of a counted group is wrong, the explanation names it by exactly such a caption. A scorer that saw
only groups whose members all look alike cannot read it, and missed most of these explanations
(docs/localization.md, "One member of a counted group"). These are true scenes for training, not negatives.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sceneworld.captions import Group
from sceneworld.counterfactual import kind_swapped, other, with_thing
from sceneworld.layout import Layout
from sceneworld.sampling import Sample
from sceneworld.vocab import COLOURS, KINDS


def odd_one(sample: Sample, rng: np.random.Generator) -> Sample | None:
    """``sample``'s scene with one member of its counted group changed, or None unless it has exactly one group of
    two or more. The colour changes (half the time) only when the caption states it, so the change is visible in
    the caption."""
    if len(sample.full.groups) != 1 or sample.full.groups[0].count < 2:
        return None
    truth, said = sample.full.groups[0], sample.caption.groups[0]
    members = [index for index, owner in enumerate(sample.layout.owners) if owner == 0]
    member = members[int(rng.integers(len(members)))]
    if said.colour and rng.random() < 0.5:
        colour = other(rng, COLOURS, [truth.colour])
        scene = with_thing(sample.layout.scene, member, colour=colour)
        odd_truth = odd_said = Group(truth.kind, colour)
    else:
        kind = other(rng, KINDS, [truth.kind])
        scene = kind_swapped(sample.layout.scene, member, kind)
        odd_truth, odd_said = Group(kind, truth.colour), Group(kind, said.colour)
    rest = truth.count - 1
    owners = tuple(1 if index == member else owner for index, owner in enumerate(sample.layout.owners))
    return Sample(replace(sample.caption, groups=(replace(said, count=rest), odd_said)),
                  replace(sample.full, groups=(replace(truth, count=rest), odd_truth)), Layout(scene, owners))


def odd_one_samples(samples: list[Sample], repeats: int, rng: np.random.Generator) -> list[Sample]:
    """``repeats`` odd-one scenes (each with its own changed member) for each sample that has a counted group."""
    drawn = (odd_one(sample, rng) for _ in range(repeats) for sample in samples)
    return [odd for odd in drawn if odd is not None]
