from itertools import permutations

import pytest
from PIL import Image

from workers.pairing import Candidate, choose_pair, render_comparison


def test_highest_is_chosen_and_lowest_rejected():
    candidates = [Candidate("b", 2, 0.25), Candidate("a", 1, 0.31), Candidate("c", 3, 0.20)]
    assert choose_pair(candidates) == (candidates[1], candidates[2])


@pytest.mark.parametrize("candidates", [[], [Candidate("a", 1, 0.3)]])
def test_fewer_than_two_gives_none(candidates):
    assert choose_pair(candidates) is None


def test_ties_resolve_the_same_in_any_order():
    candidates = [
        Candidate("best-seed-7", 7, 0.31),
        Candidate("best-seed-3", 3, 0.31),
        Candidate("best-seed-3b", 3, 0.31),
        Candidate("middle", 1, 0.25),
        Candidate("worst-seed-2", 2, 0.20),
        Candidate("worst-seed-9", 9, 0.20),
        Candidate("worst-seed-9b", 9, 0.20),
    ]
    by_id = {c.image_id: c for c in candidates}
    expected = (by_id["best-seed-3"], by_id["worst-seed-9b"])
    for order in permutations(candidates):
        assert choose_pair(list(order)) == expected


def test_all_equal_scores_choose_lowest_seed_and_reject_highest():
    candidates = [Candidate(f"img{seed}", seed, 0.27) for seed in (5, 1, 9, 3)]
    chosen, rejected = choose_pair(candidates)
    assert (chosen.seed, rejected.seed) == (1, 9)
    assert chosen != rejected


def test_two_identical_scores_still_give_two_different_images():
    chosen, rejected = choose_pair([Candidate("x", 4, 0.2), Candidate("y", 4, 0.2)])
    assert chosen.image_id == "x" and rejected.image_id == "y"


def test_duplicate_image_ids_are_refused():
    with pytest.raises(ValueError):
        choose_pair([Candidate("x", 1, 0.2), Candidate("x", 2, 0.3)])


def test_nan_score_is_refused():
    with pytest.raises(ValueError):
        choose_pair([Candidate("x", 1, float("nan")), Candidate("y", 2, 0.3)])


def test_render_comparison_returns_rgb_image():
    image = Image.new("RGB", (64, 64), (90, 120, 200))
    heatmap = Image.new("RGB", (64, 64), (200, 60, 60))
    out = render_comparison("a very long prompt " * 10, (image, heatmap, "cosine 0.312"), (image, heatmap, "cosine 0.201"))
    assert out.mode == "RGB"
    assert out.width >= 400 and out.height >= 400
