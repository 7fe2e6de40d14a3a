"""Patch scores in words: where on the picture a cell sits, and which cells agree least with the prompt."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean, pstdev

from workers.heatmap import UNITS
from workers.regions import cell_name


@dataclass(frozen=True)
class WeakCell:
    row: int
    col: int
    name: str
    value: float
    below_mean: float  # image mean minus this cell's cosine
    below_sd: float  # the same in standard deviations of this image's cells (0 for a flat map)


@dataclass(frozen=True)
class PatchAnalysis:
    grid: int
    mean: float
    sd: float
    weakest: tuple[WeakCell, ...]


def analyse(patch_scores: list[float], grid: int, count: int = 3) -> PatchAnalysis:
    """The `count` lowest cells, compared with the image's own mean: cosines are only comparable within an image."""
    if len(patch_scores) != grid * grid:
        raise ValueError(f"expected {grid * grid} patch scores for a {grid}×{grid} grid, got {len(patch_scores)}")
    mean, sd = fmean(patch_scores), pstdev(patch_scores)
    order = sorted(range(len(patch_scores)), key=lambda i: (patch_scores[i], i))[:count]
    weakest = tuple(
        WeakCell(
            row=i // grid,
            col=i % grid,
            name=cell_name(i // grid, i % grid, grid),
            value=patch_scores[i],
            below_mean=mean - patch_scores[i],
            below_sd=(mean - patch_scores[i]) / sd if sd else 0.0,
        )
        for i in order
    )
    return PatchAnalysis(grid=grid, mean=mean, sd=sd, weakest=weakest)


def describe(analysis: PatchAnalysis, method: str = "grid") -> str:
    """Markdown for a person: the weakest regions first, then what the numbers are relative to (in the unit of the
    localization method that made the map: only `grid` and `dense` maps hold cosines)."""
    unit = UNITS.get(method, "value")
    # Three significant digits, not decimals: evidence and Δcosine maps live around 1e-3, where "-0.000" says nothing.
    first, *others = analysis.weakest
    lines = [
        f"**Weakest region: {first.name}** (row {first.row + 1}, column {first.col + 1}): {unit} {first.value:.3g}, "
        f"{first.below_mean:.3g} below this image's mean of {analysis.mean:.3g} ({first.below_sd:.1f} SD).",
    ]
    if others:
        lines.append("")
        lines.append("Next weakest:")
        lines += [
            f"- {cell.name} (row {cell.row + 1}, column {cell.col + 1}): {cell.value:.3g}, "
            f"{cell.below_mean:.3g} below the mean ({cell.below_sd:.1f} SD)"
            for cell in others
        ]
    lines.append("")
    lines.append(
        f"These are the parts of the picture that agree least with the prompt by the `{method}` map ({unit}), on a "
        f"{analysis.grid}×{analysis.grid} grid. Cells are compared with the image's own mean because a map's values "
        "sit in a narrow band; the heatmap uses the same per-image scale."
    )
    return "\n".join(lines)
