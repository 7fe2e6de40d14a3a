"""Random captions of the five prompt categories, the scenes that make them true, and hard negatives: captions
one attribute, count or relation away from the truth.

A caption is read as a complete description: "a dog" is false of a scene with a dog and a cat. Unstated colours
and backgrounds may be anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sceneworld.captions import Caption, Group
from sceneworld.layout import Layout, layout
from sceneworld.vocab import BACKGROUNDS, COLOURS, KINDS, MAX_COUNT, RELATIONS

CATEGORIES = ("object_presence", "attribute_binding", "counting", "spatial_relations", "composition")
INVERSE = {"on top of": "under", "under": "on top of", "next to": "next to",
           "to the left of": "to the right of", "to the right of": "to the left of"}


@dataclass(frozen=True)
class Sample:
    caption: Caption  # what the text says
    full: Caption  # the same with every colour and the background named: the truth of the scene
    layout: Layout


def _pick(rng: np.random.Generator, options, exclude=()) -> str:
    choices = [option for option in options if option not in exclude]
    return choices[int(rng.integers(len(choices)))]


def random_caption(rng: np.random.Generator, category: str) -> Caption:
    """A fully specified caption (the scene's truth) of one category."""
    a, b = (str(kind) for kind in rng.choice(KINDS, 2, replace=False))
    colours = [_pick(rng, COLOURS), _pick(rng, COLOURS)]
    background = _pick(rng, BACKGROUNDS)
    two = rng.random() < 0.6
    if category == "counting":
        groups = [Group(a, colours[0], int(rng.integers(1, MAX_COUNT + 1)))]
        if rng.random() < 0.3:
            groups.append(Group(b, colours[1], int(rng.integers(1, 3))))
        return Caption(tuple(groups), None, background)
    if category == "spatial_relations":
        return Caption((Group(a, colours[0]), Group(b, colours[1])), _pick(rng, RELATIONS), background)
    if category == "composition":
        if rng.random() < 0.5:
            return Caption((Group(a, colours[0]), Group(b, colours[1])), _pick(rng, RELATIONS), background)
        return Caption((Group(a, colours[0], int(rng.integers(1, 4))), Group(b, colours[1], int(rng.integers(1, 3)))), None, background)
    groups = (Group(a, colours[0]), Group(b, colours[1])) if two else (Group(a, colours[0]),)
    return Caption(groups, None, background)


def stated(full: Caption, rng: np.random.Generator, category: str) -> Caption:
    """What a caption of this category says about a scene: some colours and the background left out."""
    say_colour = {"object_presence": 0.0, "attribute_binding": 1.0, "counting": 0.5,
                  "spatial_relations": 0.3, "composition": 0.9}[category]
    say_background = {"composition": 0.8}.get(category, 0.4)
    groups = tuple(replace(g, colour=g.colour if rng.random() < say_colour else None) for g in full.groups)
    return Caption(groups, full.relation, full.background if rng.random() < say_background else None)


def sample(rng: np.random.Generator, category: str | None = None) -> Sample:
    category = category or _pick(rng, CATEGORIES)
    full = random_caption(rng, category)
    return Sample(stated(full, rng, category), full, layout(full, rng))


def _groups_match(truth: tuple[Group, ...], claim: tuple[Group, ...]) -> bool:
    return len(truth) == len(claim) and all(
        t.kind == c.kind and t.count == c.count and c.colour in (None, t.colour) for t, c in zip(truth, claim)
    )


def entails(full: Caption, claim: Caption) -> bool:
    """Whether the claim is true of a scene whose complete truth is ``full``."""
    if claim.background not in (None, full.background):
        return False
    if _groups_match(full.groups, claim.groups):
        return claim.relation in (None, full.relation)
    if _groups_match(full.groups[::-1], claim.groups):
        return claim.relation is None or (full.relation is not None and claim.relation == INVERSE[full.relation])
    return False


def _mutations(caption: Caption, full: Caption, rng: np.random.Generator) -> list[Caption]:
    groups = list(caption.groups)
    out = []
    i = int(rng.integers(len(groups)))
    g = groups[i]
    others = {group.kind for group in groups}
    out.append(replace(caption, groups=tuple(groups[:i] + [replace(g, kind=_pick(rng, KINDS, others))] + groups[i + 1:])))
    out.append(replace(caption, groups=tuple(groups[:i] + [replace(g, colour=_pick(rng, COLOURS, [full.groups[i].colour]))] + groups[i + 1:])))
    if caption.relation is None:
        new_count = _pick(rng, range(1, MAX_COUNT + 1), [g.count])
        out.append(replace(caption, groups=tuple(groups[:i] + [replace(g, count=new_count)] + groups[i + 1:])))
    if len(groups) == 2:
        a, b = groups
        if a.colour and b.colour and a.colour != b.colour:
            out.append(replace(caption, groups=(replace(a, colour=b.colour), replace(b, colour=a.colour))))
        if caption.relation:
            out.append(replace(caption, relation=_pick(rng, RELATIONS, [caption.relation])))
            out.append(replace(caption, groups=(b, a)))
        else:
            out.append(replace(caption, groups=(groups[1 - i],)))
    elif caption.relation is None:
        out.append(replace(caption, groups=(g, Group(_pick(rng, KINDS, others)))))
    if caption.background:
        out.append(replace(caption, background=_pick(rng, BACKGROUNDS, [caption.background])))
    else:
        out.append(replace(caption, background=_pick(rng, BACKGROUNDS, [full.background])))
    return out


def hard_negatives(caption: Caption, full: Caption, rng: np.random.Generator, n: int) -> list[Caption]:
    """n captions, each one change away from ``caption`` and false of the scene."""
    candidates = [m for m in _mutations(caption, full, rng) if not entails(full, m)]
    order = rng.permutation(len(candidates))
    picked = [candidates[k] for k in order[:n]]
    while len(picked) < n:
        picked.append(candidates[int(rng.integers(len(candidates)))])
    return picked
