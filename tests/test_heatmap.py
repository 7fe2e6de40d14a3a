import numpy as np
import pytest
from PIL import Image

from workers.heatmap import legend_labels, normalise, overlay, render_heatmap, upsample

GRID = 7
SIDE = 64
HIGH, LOW = 0.30, 0.10


def grey_image(width: int = SIDE, height: int = SIDE) -> Image.Image:
    # Neutral grey so the only colour in the overlay comes from the heatmap.
    return Image.new("RGB", (width, height), (128, 128, 128))


def cosines_with_low_cell(index: int) -> list[float]:
    cells = [HIGH] * (GRID * GRID)
    cells[index] = LOW
    return cells


def cell_centre(index: int, side: int = SIDE) -> tuple[int, int]:
    row, col = divmod(index, GRID)
    step = side / GRID
    return int((col + 0.5) * step), int((row + 0.5) * step)


def red_minus_green(image: Image.Image, xy: tuple[int, int]) -> int:
    r, g, _ = image.getpixel(xy)
    return r - g


def test_normalise_maps_min_to_0_and_max_to_1():
    out = normalise(np.array([[0.12, 0.20], [0.31, 0.25]]))
    assert out.min() == 0.0
    assert out.max() == 1.0
    assert out[0, 0] == 0.0 and out[1, 0] == 1.0
    assert out[0, 1] == pytest.approx((0.20 - 0.12) / (0.31 - 0.12))


def test_normalise_constant_map_is_half():
    assert np.array_equal(normalise(np.full((3, 3), 0.27)), np.full((3, 3), 0.5))


@pytest.mark.parametrize("width,height", [(64, 48), (30, 100), (64, 64)])
def test_upsample_shape_is_height_by_width_and_clipped(width, height):
    cells = np.zeros((GRID, GRID))
    cells[3, 3] = 1.0  # a sharp spike makes bicubic overshoot unless clipped
    out = upsample(cells, width, height)
    assert out.shape == (height, width)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_overlay_keeps_image_size_and_mode():
    image = grey_image(80, 48)
    out = overlay(image, cosines_with_low_cell(0), GRID)
    assert out.size == image.size
    assert out.mode == "RGB"


def test_overlay_low_cell_is_red_and_high_cell_is_green():
    low_index, high_index = 24, 48  # centre cell low; bottom-right cell stays high
    out = overlay(grey_image(), cosines_with_low_cell(low_index), GRID)
    low = red_minus_green(out, cell_centre(low_index))
    high = red_minus_green(out, cell_centre(high_index))
    assert low > 0, "low-cosine cell should be red (R > G)"
    assert high < 0, "high-cosine cell should be green (G > R)"
    assert low > high


@pytest.mark.parametrize("low_index,red_xy,green_xy", [(0, (3, 3), (60, 3)), (6, (60, 3), (3, 3))])
def test_overlay_cells_are_row_major(low_index, red_xy, green_xy):
    out = overlay(grey_image(), cosines_with_low_cell(low_index), GRID)
    assert red_minus_green(out, red_xy) > 0
    assert red_minus_green(out, green_xy) < 0


def test_overlay_rejects_wrong_number_of_cells():
    with pytest.raises(ValueError):
        overlay(grey_image(), [0.2] * 48, GRID)


def test_legend_labels_state_real_min_and_max():
    cells = [0.2] * 49
    cells[5], cells[40] = 0.1419, 0.2911
    low, high = legend_labels(cells)
    assert "red" in low and "disagrees" in low and "0.142" in low
    assert "green" in high and "agrees" in high and "0.291" in high


@pytest.mark.parametrize("size", [(64, 64), (512, 384)])
def test_render_heatmap_is_rgb_and_legible_size(size):
    out = render_heatmap(grey_image(*size), cosines_with_low_cell(10), GRID, title="a red cube on a blue sphere")
    assert out.mode == "RGB"
    assert 400 <= out.width <= 520
    assert 350 <= out.height <= 700
