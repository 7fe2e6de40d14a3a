"""The localization benchmark's ground truth and measures."""

import numpy as np
import pytest

from benchmarks.localization import VIOLATIONS, auroc, lowest_cell_hits, make_cases
from sceneworld.captions import parse


def test_auroc():
    truth = np.array([0, 0, 1, 1], dtype=bool)
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), truth) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), truth) == 0.0
    assert auroc(np.full(4, 0.5), truth) == 0.5
    assert auroc(np.array([0.1, 0.5, 0.5, 0.9]), truth) == pytest.approx(0.875)


def test_lowest_cell_hits():
    mask = np.zeros((64, 64), dtype=bool)
    mask[60:, 60:] = True
    cells = np.ones((7, 7))
    cells[6, 6] = 0.0
    assert lowest_cell_hits(cells, mask)
    cells[6, 6], cells[0, 0] = 1.0, 0.0
    assert not lowest_cell_hits(cells, mask)


def test_cases_differ_only_at_the_violating_object():
    cases = make_cases(24, seed=5)
    assert [c.violation for c in cases[:4]] == list(VIOLATIONS)
    for case in cases:
        parse(case.prompt)
        assert case.object_mask.sum() >= 12
        assert not (case.object_mask & ~case.mask).any()  # the changed object is always part of the truth
        changed = np.abs(np.asarray(case.faithful, int) - np.asarray(case.corrupted, int)).sum(axis=2) > 30
        # Resampling spreads an edge over a few pixels; nothing further away may change.
        near = np.zeros_like(case.object_mask)
        ys, xs = np.nonzero(case.object_mask)
        near[max(ys.min() - 3, 0) : ys.max() + 4, max(xs.min() - 3, 0) : xs.max() + 4] = True
        if case.violation == "kind_swap":
            continue  # the old object's pixels change too, and they lie outside the new one's mask
        assert changed.any() and not (changed & ~near).any(), case.violation


def test_an_extra_instance_is_found_at_any_instance_of_its_group():
    """The added apple looks like the others, so the truth is every apple; any other violation is its one object."""
    for case in make_cases(24, seed=5):
        if case.violation == "extra_instance":
            assert case.mask.sum() > case.object_mask.sum()
        else:
            assert (case.mask == case.object_mask).all()


def test_swap_cases_know_the_phrase_and_what_it_was_swapped_to():
    from sceneworld.vocab import COLOURS, KINDS

    for case in make_cases(16, seed=7):
        if case.violation in ("colour_swap", "kind_swap"):
            assert case.phrase in [g.text() for g in parse(case.prompt).groups]
            assert case.alternative in (COLOURS if case.violation == "colour_swap" else KINDS)
            assert case.alternative not in case.phrase.split()
        else:
            assert case.phrase is None and case.alternative is None
