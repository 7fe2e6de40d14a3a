"""Draw where an image disagrees with its prompt, from CLIP cosines scored per patch on a G×G grid.

Colours are scaled per image: CLIP patch cosines sit in a narrow band (about 0.1 to 0.35), so a fixed
0..1 scale would paint every image one colour. Scaled to its own range, a map shows where an image is
weakest relative to itself; the legend states the map's real values at both ends (cosines for the grid method,
each other method's own unit) so nobody reads red as "absolutely bad".
"""

from __future__ import annotations

import textwrap

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

# Low cosine is red (disagrees with the prompt), high is green (agrees).
COLORMAP = matplotlib.colormaps["RdYlGn"]

# Generated images can be as small as 64×64; below this size they are enlarged before drawing so that
# the heatmap is smooth and the picture is big enough to see.
MIN_DISPLAY_SIDE = 384

# What a cell's value is, per localization method (docs/localization.md), for the legend.
UNITS = {"grid": "cos", "dense": "cos", "multiscale": "z", "occlusion": "Δcos", "phrases": "evidence"}

FIGURE_WIDTH_IN = 4.5
DPI = 100


def cells_grid(patch_cosines: list[float], grid: int) -> np.ndarray:
    """The cosines as a (grid, grid) array, row-major: cell 0 is top-left, cell grid-1 top-right."""
    cells = np.asarray(patch_cosines, dtype=np.float64)
    if cells.shape != (grid * grid,):
        raise ValueError(f"expected {grid * grid} patch cosines for a {grid}×{grid} grid, got {cells.size}")
    if not np.all(np.isfinite(cells)):
        raise ValueError("patch cosines must be finite")
    return cells.reshape(grid, grid)


def normalise(cells: np.ndarray) -> np.ndarray:
    """Min–max scale to 0..1 within this image; a constant map becomes all 0.5 (no weak spot to show)."""
    cells = np.asarray(cells, dtype=np.float64)
    low, high = cells.min(), cells.max()
    if high == low:
        return np.full_like(cells, 0.5)
    return (cells - low) / (high - low)


def upsample(cells: np.ndarray, width: int, height: int) -> np.ndarray:
    """Smoothly resize a (G, G) map in 0..1 to (height, width)."""
    field = Image.fromarray(np.asarray(cells, dtype=np.float32), mode="F")
    resized = np.asarray(field.resize((width, height), Image.Resampling.BICUBIC))
    # Bicubic overshoots near sharp steps; values outside 0..1 would fall off the colormap.
    return np.clip(resized, 0.0, 1.0)


def overlay(image: Image.Image, patch_cosines: list[float], grid: int, alpha: float = 0.45) -> Image.Image:
    """The image, in grey, with the per-image-scaled heatmap blended over it; same size as the image."""
    # Blend over a grey copy: the image's own reds and greens would otherwise read as heatmap colours.
    grey = image.convert("L").convert("RGB")
    base = np.asarray(grey, dtype=np.float32) / 255.0
    field = upsample(normalise(cells_grid(patch_cosines, grid)), image.width, image.height)
    colours = COLORMAP(field)[..., :3]
    blended = (1.0 - alpha) * base + alpha * colours
    return Image.fromarray(np.round(blended * 255.0).astype(np.uint8), mode="RGB")


def legend_labels(cells: np.ndarray | list[float], unit: str = "cos") -> tuple[str, str]:
    """Texts for the red and green ends of the legend, with this image's real values (cosines for the grid
    method; other localization methods' maps have their own units, named by `unit`)."""
    cells = np.asarray(cells, dtype=np.float64)
    return (
        f"red: disagrees with prompt ({unit} {cells.min():.3f})",
        f"green: agrees ({unit} {cells.max():.3f})",
    )


def figure_to_image(fig: Figure) -> Image.Image:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")


def enlarge_for_display(image: Image.Image) -> Image.Image:
    scale = MIN_DISPLAY_SIDE / min(image.size)
    if scale <= 1:
        return image
    # Nearest keeps the generated pixels as they are rather than inventing detail.
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.NEAREST)


def render_heatmap(
    image: Image.Image,
    patch_cosines: list[float],
    grid: int,
    title: str | None = None,
    outline_lowest: bool = True,
    unit: str = "cos",
) -> Image.Image:
    """A figure of the heatmap overlay with a legend giving the map's real values at its ends."""
    cells = cells_grid(patch_cosines, grid)
    display = enlarge_for_display(image)
    shown = overlay(display, patch_cosines, grid)

    # Room below the picture for the colorbar, above it for the title.
    title_lines = textwrap.wrap(title, 60) if title else []
    height_in = FIGURE_WIDTH_IN * display.height / display.width + 1.0 + 0.2 * len(title_lines)
    fig = Figure(figsize=(FIGURE_WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(shown)
    ax.set_axis_off()
    if title_lines:
        ax.set_title("\n".join(title_lines), fontsize=9)

    if outline_lowest:
        row, col = np.unravel_index(np.argmin(cells), cells.shape)
        cell_w, cell_h = display.width / grid, display.height / grid
        # Pixel centres sit at integer coordinates in imshow, so cell edges are offset by half a pixel.
        ax.add_patch(
            Rectangle(
                (col * cell_w - 0.5, row * cell_h - 0.5),
                cell_w,
                cell_h,
                fill=False,
                edgecolor="black",
                linewidth=1.5,
                linestyle="--",
            )
        )

    # The bar runs over the normalised 0..1 scale the colours were drawn on; only its ends carry
    # meaning, and those are labelled with the real cosines.
    colorbar = fig.colorbar(
        ScalarMappable(norm=Normalize(0.0, 1.0), cmap=COLORMAP),
        ax=ax,
        orientation="horizontal",
        fraction=0.05,
        pad=0.02,
        aspect=30,
    )
    low_text, high_text = legend_labels(cells, unit)
    colorbar.set_ticks([0.0, 1.0], labels=[low_text, high_text], fontsize=7.5)
    low_label, high_label = colorbar.ax.get_xticklabels()
    low_label.set_horizontalalignment("left")
    high_label.set_horizontalalignment("right")
    colorbar.set_label(f"colours scaled to this image's own {unit} range", fontsize=7.5)
    return figure_to_image(fig)
