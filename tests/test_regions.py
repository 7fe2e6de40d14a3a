"""Naming grid cells in words and finding the weakest ones, as the demo's patch analysis shows them."""

from __future__ import annotations

import pytest

from frontend.regions import analyse, cell_name, describe


@pytest.mark.parametrize(
    ("row", "col", "name"),
    [
        (0, 0, "top-left"),
        (0, 3, "top centre"),
        (0, 6, "top-right"),
        (1, 0, "upper left"),
        (3, 3, "centre"),
        (3, 6, "middle right"),
        (5, 3, "lower centre"),
        (6, 0, "bottom-left"),
        (6, 6, "bottom-right"),
    ],
)
def test_cells_of_a_7x7_grid_are_named_where_a_person_would_look(row, col, name):
    assert cell_name(row, col, 7) == name


def test_every_grid_size_names_its_corners_and_a_single_cell_is_the_whole_image():
    for grid in range(2, 17):
        assert cell_name(0, 0, grid) == "top-left"
        assert cell_name(grid - 1, grid - 1, grid) == "bottom-right"
    assert cell_name(0, 0, 1) == "whole image"


def test_weakest_cells_are_ranked_against_the_images_own_mean():
    scores = [0.2] * 49
    scores[45] = 0.1  # row 7, column 4
    scores[0] = 0.15
    analysis = analyse(scores, 7, count=2)
    assert [(c.row, c.col, c.name) for c in analysis.weakest] == [(6, 3, "bottom centre"), (0, 0, "top-left")]
    assert analysis.weakest[0].below_mean == pytest.approx(analysis.mean - 0.1)
    assert analysis.weakest[0].below_sd > analysis.weakest[1].below_sd > 0
    text = describe(analysis)
    assert "-0.00123" in describe(analyse([0.0] * 8 + [-0.00123], 3, count=1))  # small maps keep their digits
    assert text.startswith("**Weakest region: bottom centre** (row 7, column 4)")
    assert "top-left" in text
    assert "cos 0.1," in text
    assert "z 0.1," in describe(analysis, "multiscale")  # only grid and dense maps hold cosines


def test_a_flat_map_has_no_spread_and_wrong_sizes_are_refused():
    assert analyse([0.3] * 9, 3).weakest[0].below_sd == 0.0
    with pytest.raises(ValueError, match="expected 49"):
        analyse([0.1] * 48, 7)
