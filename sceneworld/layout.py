"""Where the objects a caption asserts go: a scene in which the caption is true, drawn at random from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sceneworld.captions import Caption, Group
from sceneworld.icons import ASPECT
from sceneworld.scene import Scene, Thing

# Backgrounds with a floor: objects stand on it. In the sky they float anywhere.
GROUNDED = {"beach": (0.7, 0.95), "park": (0.66, 0.95), "table": (0.6, 0.95), "mars": (0.62, 0.95)}
SKY = (0.35, 0.95)
ROW_SPAN = 0.94  # share of the width a row of objects may use
LEFT_RIGHT_GAP = 0.1  # "to the left of" needs at least this clear gap; "next to" touches


@dataclass(frozen=True)
class Layout:
    scene: Scene
    owners: tuple[int, ...]  # for each thing, the index of the caption group it belongs to (len(groups) = extra)


def _bottom(rng: np.random.Generator, background: str) -> float:
    low, high = GROUNDED.get(background, SKY)
    return float(rng.uniform(low, high))


def _row(
    rng: np.random.Generator, background: str, items: list[tuple[str, str, int]], min_gap: float, max_gap: float | None
) -> tuple[list[Thing], list[int]]:
    """Things side by side, left to right in the given order, none overlapping.

    min_gap/max_gap bound the gap between the first and second item (the related pair); other gaps are free."""
    aspects = np.array([ASPECT[kind] for kind, _, _ in items])
    cap = (ROW_SPAN - min_gap) / aspects.sum() / 1.15
    heights = min(float(rng.uniform(0.2, 0.38)), cap) * rng.uniform(0.85, 1.15, len(items))
    widths = heights * aspects
    free = ROW_SPAN - widths.sum() - min_gap
    gaps = rng.dirichlet(np.ones(len(items) + 1)) * free
    if len(items) > 1:
        gaps[1] += min_gap
        if max_gap is not None and gaps[1] > max_gap:
            gaps[0] += gaps[1] - max_gap
            gaps[1] = max_gap
    left = (1 - ROW_SPAN) / 2 + gaps[0]
    shared_bottom = _bottom(rng, background)
    things, owners = [], []
    for index, ((kind, colour, owner), height, width) in enumerate(zip(items, heights, widths)):
        bottom = shared_bottom if max_gap is not None else _bottom(rng, background)
        bottom = max(bottom, height + 0.02)
        things.append(Thing(kind, colour, left + width / 2, bottom, float(height)))
        owners.append(owner)
        left += width + gaps[index + 1]
    return things, owners


def _stack(rng: np.random.Generator, background: str, lower: tuple[str, str, int], upper: tuple[str, str, int]):
    low_h = float(rng.uniform(0.25, 0.4))
    up_h = low_h * float(rng.uniform(0.55, 0.8))
    x = float(rng.uniform(0.3, 0.7))
    bottom = max(_bottom(rng, background), low_h + up_h + 0.03)
    things = [
        Thing(lower[0], lower[1], x, bottom, low_h),
        Thing(upper[0], upper[1], x + float(rng.uniform(-0.04, 0.04)), bottom - low_h + 0.01, up_h),
    ]
    return things, [lower[2], upper[2]]


def _under_chair(rng: np.random.Generator, background: str, thing: tuple[str, str, int], chair: tuple[str, str, int]):
    chair_h = float(rng.uniform(0.32, 0.45))
    x = float(rng.uniform(0.3, 0.7))
    bottom = _bottom(rng, background)
    bottom = max(bottom, chair_h + 0.02)
    # Small enough to fit between the legs, below the seat.
    small = chair_h * 0.32 / max(1.0, ASPECT[thing[0]])
    return [Thing(chair[0], chair[1], x, bottom, chair_h), Thing(thing[0], thing[1], x, bottom, small)], [chair[2], thing[2]]


def layout(full: Caption, rng: np.random.Generator, extra: Group | None = None) -> Layout:
    """A scene of a fully specified caption (every colour and the background named); ``extra`` adds one more
    object of that kind and colour in free space (owner index len(groups)) for corrupted scenes."""
    if full.background is None or any(group.colour is None for group in full.groups):
        raise ValueError("layout needs a fully specified caption")
    items = [(group.kind, group.colour, index) for index, group in enumerate(full.groups) for _ in range(group.count)]
    extra_item = [(extra.kind, extra.colour, len(full.groups))] if extra else []
    relation = full.relation
    if extra and relation:
        raise ValueError("an extra object only goes into scenes without a relation")
    if relation is None:
        row = items + extra_item
        order = rng.permutation(len(row))
        things, owners = _row(rng, full.background, [row[i] for i in order], 0.0, None)
    elif relation == "on top of":
        things, owners = _stack(rng, full.background, items[1], items[0])
    elif relation == "under" and items[1][0] == "chair":
        things, owners = _under_chair(rng, full.background, items[0], items[1])
    elif relation == "under":
        things, owners = _stack(rng, full.background, items[0], items[1])
    else:
        a, b = items
        pair = [b, a] if relation == "to the right of" or (relation == "next to" and rng.random() < 0.5) else [a, b]
        low, high = (0.005, 0.03) if relation == "next to" else (LEFT_RIGHT_GAP, None)
        things, owners = _row(rng, full.background, pair, low, high)
    return Layout(Scene(full.background, tuple(things)), tuple(owners))
