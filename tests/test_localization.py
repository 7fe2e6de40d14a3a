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


def test_swaps_know_whether_they_changed_one_member_of_a_counted_group():
    from benchmarks.localization import in_counted_group
    from sceneworld.vocab import NUMBERS

    swaps = [case for case in make_cases(120, seed=7) if case.violation in ("colour_swap", "kind_swap")]
    members = [case for case in swaps if in_counted_group(case)]
    assert 0 < len(members) < len(swaps)
    counted = {word for n, word in NUMBERS.items() if n > 1}
    assert all((case in members) == (case.phrase.split()[0] in counted) for case in swaps)


def test_share_intervals_hold_the_share_narrow_with_more_pairs_and_stay_within_0_1():
    from benchmarks.localization import share_interval

    low, high = share_interval([True] * 282 + [False] * 18)  # 0.940 of 300
    assert low < 0.94 < high and high - low < 0.06
    wide_low, wide_high = share_interval([True] * 47 + [False] * 3)  # the same share of 50
    assert wide_low < low and wide_high > high
    assert share_interval([True] * 10) == pytest.approx((0.722, 1.0), abs=1e-3)  # Wilson's, not 1.0 ± 0
    assert share_interval([False] * 10)[0] == pytest.approx(0.0, abs=1e-12)


def test_a_target_is_met_or_missed_only_when_the_whole_interval_says_so():
    from benchmarks.localization import mean_interval, target_verdicts, verdict

    assert verdict(0.97, (0.955, 0.985), 0.95) == "met"
    assert verdict(0.90, (0.86, 0.93), 0.95) == "missed"
    assert verdict(0.94, (0.91, 0.96), 0.95) == "undecided (leans missed)"
    assert verdict(0.96, (0.94, 0.98), 0.95) == "undecided (leans met)"
    low, high = mean_interval([0.9, 0.95, 0.85, 0.9])
    assert low < 0.9 < high
    row = {"pair_accuracy": 0.99, "pointing_game": 0.5, "auroc": 0.95, "seconds_per_image": 0.3,
           "ci95": {"pair_accuracy": (0.97, 1.0), "pointing_game": (0.4, 0.6), "auroc": (0.93, 0.97)}}
    results = {"grid": {"overall": row | {"seconds_per_image": 0.1}}, "phrases": {"overall": row}}
    explanations = {"overall": {"correct": 0.7, "ci95": (0.6, 0.78)}}
    said = dict(target_verdicts(results, explanations, "phrases"))
    assert said == {
        "pair_accuracy >= 0.95 (overall)": "met",
        "pointing_game >= 0.85 (overall)": "missed",
        "auroc >= 0.9 (overall)": "met",
        "explanations >= 0.8": "missed",
        "cost <= 3.0x grid": "met (3.00x)",
    }
