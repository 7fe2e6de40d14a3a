"""Counterfactual scenes: a scene changed in exactly one object so that its caption becomes false — a colour or a
kind swapped, an object the caption does not mention added, an instance added beyond the count, or one removed.

The mini CLIP trains on them as hard negative *images* (a caption must prefer its own scene to the scene one
change away), and the localization benchmark builds its corrupted scenes from the same edits.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sceneworld.captions import Group
from sceneworld.icons import ASPECT
from sceneworld.layout import layout
from sceneworld.sampling import Sample
from sceneworld.scene import Scene
from sceneworld.vocab import COLOURS, KINDS


def other(rng: np.random.Generator, options, exclude) -> str:
    choices = [option for option in options if option not in exclude]
    return str(choices[int(rng.integers(len(choices)))])


def with_thing(scene: Scene, index: int, **change) -> Scene:
    things = list(scene.things)
    things[index] = replace(things[index], **change)
    return replace(scene, things=tuple(things))


def kind_swapped(scene: Scene, index: int, kind: str) -> Scene:
    thing = scene.things[index]
    # Same footprint width, so the new object does not spill onto its neighbours.
    height = min(thing.width / ASPECT[kind], thing.height * 1.3, thing.bottom - 0.02)
    return with_thing(scene, index, kind=kind, height=height)


def violating(sample: Sample, rng: np.random.Generator) -> Scene:
    """A scene one object away from ``sample``'s, of which its caption is false."""
    caption, scene, owners = sample.caption, sample.layout.scene, sample.layout.owners
    edits = ["kind", "extra_object", "extra_instance", "removed"]
    coloured = [i for i, owner in enumerate(owners) if caption.groups[owner].colour]
    if coloured:
        edits.append("colour")
    if caption.relation:  # an added object would break the relation's layout; a removed one leaves it unreadable
        edits = [e for e in edits if e not in ("extra_object", "extra_instance", "removed")]
    if len(scene.things) == 1 and "removed" in edits:
        edits.remove("removed")  # an empty scene is not an object-level change
    edit = edits[int(rng.integers(len(edits)))]
    if edit == "colour":
        index = coloured[int(rng.integers(len(coloured)))]
        return with_thing(scene, index, colour=other(rng, COLOURS, [scene.things[index].colour]))
    if edit == "kind":
        index = int(rng.integers(len(scene.things)))
        return kind_swapped(scene, index, other(rng, KINDS, [g.kind for g in caption.groups]))
    if edit == "removed":
        index = int(rng.integers(len(scene.things)))
        return replace(scene, things=scene.things[:index] + scene.things[index + 1:])
    full = sample.full
    if edit == "extra_instance":
        group = full.groups[int(rng.integers(len(full.groups)))]
        extra = Group(group.kind, group.colour)
    else:
        extra = Group(other(rng, KINDS, [g.kind for g in full.groups]), other(rng, COLOURS, []))
    return layout(full, rng, extra=extra).scene
