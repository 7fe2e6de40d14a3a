"""Choose the best and worst image for a prompt, and draw them side by side with their heatmaps."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

from matplotlib.figure import Figure
from PIL import Image

from workers.heatmap import figure_to_image


@dataclass(frozen=True)
class Candidate:
    image_id: str
    seed: int
    score: float


def ranking_score(global_cosine: float, log_faithfulness: float | None) -> float:
    """What a prompt's images are paired by: the faithfulness where the prompt has alternatives to be read against
    (it tells the faithful image from the unfaithful one better, docs/localization.md), else the cosine. All
    images of a prompt share the prompt, so they are all ranked the same way."""
    return global_cosine if log_faithfulness is None else log_faithfulness


def _rank(candidate: Candidate) -> tuple[float, int, str]:
    # Smallest rank = best. Ties on score fall back to seed, then image id, so the pair never depends
    # on the order the images finished scoring in.
    return (-candidate.score, candidate.seed, candidate.image_id)


def choose_pair(candidates: list[Candidate]) -> tuple[Candidate, Candidate] | None:
    """(chosen, rejected): the highest and lowest score, or None with fewer than two images.

    Among equal best scores the lowest seed (then image id) is chosen; among equal worst scores the
    highest seed (then image id) is rejected. Image ids must be distinct, so the two always differ.
    """
    if len(candidates) < 2:
        return None
    if len({c.image_id for c in candidates}) != len(candidates):
        raise ValueError("candidates must have distinct image ids")
    if not all(math.isfinite(c.score) for c in candidates):
        # NaN compares false with everything, which would make the choice depend on input order.
        raise ValueError("candidate scores must be finite")
    return min(candidates, key=_rank), max(candidates, key=_rank)


# (image, heatmap overlay, what it was ranked by) for one side of a comparison.
Shown = tuple[Image.Image, Image.Image, str]


def score_label(global_cosine: float, log_faithfulness: float | None) -> str:
    if log_faithfulness is None:
        return f"cosine {global_cosine:.3f}"
    return f"P(as prompted) {math.exp(log_faithfulness):.3g}"


def render_comparison(prompt: str, chosen: Shown, rejected: Shown) -> Image.Image:
    """Chosen on the left, rejected on the right; each image above its heatmap overlay."""
    title_lines = textwrap.wrap(prompt, 60) or [""]
    fig = Figure(figsize=(5.0, 5.6 + 0.18 * len(title_lines)), dpi=100, layout="constrained")
    fig.suptitle("\n".join(title_lines), fontsize=10)
    axes = fig.subplots(2, 2)

    for column, (label, (image, heatmap, score)) in enumerate(
        (("CHOSEN", chosen), ("REJECTED", rejected))
    ):
        top, bottom = axes[0, column], axes[1, column]
        # Nearest keeps small (64×64) generations honest when enlarged to fill the panel.
        top.imshow(image.convert("RGB"), interpolation="nearest")
        top.set_title(f"{label}\n{score}", fontsize=10, fontweight="bold")
        bottom.imshow(heatmap.convert("RGB"), interpolation="nearest")
        bottom.set_title("heatmap", fontsize=8)
        for ax in (top, bottom):
            ax.set_axis_off()

    fig.supxlabel(
        "red = disagrees with prompt, green = agrees\n(colours scaled within each image; compare scores, not colours)",
        fontsize=8,
    )
    return figure_to_image(fig)
