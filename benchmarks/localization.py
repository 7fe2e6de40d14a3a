"""Localization benchmark: does a scoring method find the one object in a scene that violates its caption?

For N caption/scene pairs (fixed seeds) it renders a faithful scene and a corrupted copy in which exactly one object
violates the caption — its colour swapped, its kind swapped, an extra object the caption does not mention, or an
extra instance beyond the caption's count — and keeps that object's mask as ground truth (for an extra instance,
the masks of all the group's instances: the added one looks exactly like the others). Per method it reports:

- pair accuracy: the faithful scene's global score beats the corrupted one's;
- pointing game: the lowest heatmap cell of the corrupted scene overlaps the ground truth;
- pixel AUROC of (1 - normalised, upsampled heatmap) against the ground-truth mask, averaged over scenes;
- seconds per image scored;
- explanation correctness (colour and kind swaps): the first finding of workers/explain.py names the phrase the
  corrupted object belongs to and the colour or kind it was swapped to; and the share of faithful scenes with any
  finding (false alarms) and of corrupted scenes with any (detections);
- a 95% interval for every share and mean, and for the default method whether each of the targets of
  docs/localization.md is met, missed, or not yet told apart from it by this many pairs.

    python -m benchmarks.localization --json results.json
    python -m benchmarks.localization --methods grid,phrases --n 100
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from sceneworld.captions import Caption, Group, parse
from sceneworld.counterfactual import kind_swapped, other, with_thing
from sceneworld.layout import layout
from sceneworld.sampling import random_caption, stated
from sceneworld.scene import render
from sceneworld.vocab import COLOURS, KINDS, PLURALS
from workers.heatmap import normalise, upsample

VIOLATIONS = ("colour_swap", "kind_swap", "extra_object", "extra_instance")
IMAGE_SIZE = 64
GRID = 7
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    violation: str
    prompt: str
    faithful: Image.Image
    corrupted: Image.Image
    mask: np.ndarray  # (H, W) bool: where the violation is, the ground truth (see make_case)
    object_mask: np.ndarray  # (H, W) bool: the visible pixels of the one object that was changed or added
    phrase: str | None = None  # colour and kind swaps: the caption's phrase the swapped object belongs to
    alternative: str | None = None  # ... and the colour or kind it was swapped to


def make_case(violation: str, rng: np.random.Generator) -> Case:
    if violation == "colour_swap":
        full = random_caption(rng, str(rng.choice(["attribute_binding", "composition", "counting"])))
        caption = replace(full, background=full.background if rng.random() < 0.5 else None)
        placed = layout(full, rng)
        scene = placed.scene
        victim = int(rng.integers(len(scene.things)))
        corrupted = with_thing(scene, victim, colour=other(rng, COLOURS, [scene.things[victim].colour]))
        truth = (caption.groups[placed.owners[victim]].text(), corrupted.things[victim].colour)
    elif violation == "kind_swap":
        category = str(rng.choice(["object_presence", "attribute_binding", "counting", "spatial_relations"]))
        full = random_caption(rng, category)
        caption = stated(full, rng, category)
        placed = layout(full, rng)
        scene = placed.scene
        victim = int(rng.integers(len(scene.things)))
        kind = other(rng, KINDS, [g.kind for g in full.groups])
        corrupted = kind_swapped(scene, victim, kind)
        truth = (caption.groups[placed.owners[victim]].text(), kind)
    elif violation in ("extra_object", "extra_instance"):
        category = "counting" if violation == "extra_instance" else str(
            rng.choice(["object_presence", "attribute_binding", "counting"]))
        full = random_caption(rng, category)
        if violation == "extra_instance":
            full = replace(full, groups=(replace(full.groups[0], count=int(rng.integers(1, 5))),) + full.groups[1:])
            extra = full.groups[0]
        else:
            extra = Group(other(rng, KINDS, [g.kind for g in full.groups]), other(rng, COLOURS, []))
        caption = stated(full, rng, category)
        placed = layout(full, rng, extra=Group(extra.kind, extra.colour))
        corrupted = placed.scene
        victim = placed.owners.index(len(full.groups))
        scene = replace(corrupted, things=corrupted.things[:victim] + corrupted.things[victim + 1:])
        truth = (None, None)
    else:
        raise ValueError(violation)
    rendered = render(corrupted, IMAGE_SIZE)
    mask = rendered.masks[victim]
    if violation == "extra_instance":
        # Four identical apples where the caption says three: nothing in the image tells which one was added, so
        # the violation is the group, and pointing at any of its instances is right (docs/localization.md).
        group = (0, len(full.groups))
        mask = np.logical_or.reduce([m for m, owner in zip(rendered.masks, placed.owners) if owner in group])
    return Case(violation, caption.text(), render(scene, IMAGE_SIZE).image, rendered.image, mask,
                rendered.masks[victim], *truth)


def make_cases(n: int, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        case = make_case(VIOLATIONS[len(cases) % len(VIOLATIONS)], rng)
        # An object hidden behind others violates nothing visible.
        if case.object_mask.sum() >= 12:
            cases.append(case)
    return cases


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    scores, positives = scores.ravel(), positives.ravel().astype(bool)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average rank of each distinct value, so tied pixels count half.
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


Z95 = 1.959964  # two-sided 95% quantile of the normal distribution


def share_interval(hits: Sequence[bool]) -> tuple[float, float]:
    """Wilson's 95% interval for a share of n trials: unlike the normal approximation it stays within 0..1 and
    keeps its coverage near 0 and 1, where good methods' shares sit."""
    n, share = len(hits), float(np.mean(hits))
    centre = (share + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * np.sqrt(share * (1 - share) / n + Z95**2 / (4 * n**2))
    return centre - half, centre + half


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """Normal 95% interval for a mean over scenes (each scene's AUROC is one value)."""
    mean, half = float(np.mean(values)), Z95 * float(np.std(values, ddof=1)) / np.sqrt(len(values))
    return mean - half, mean + half


# A method maps (image, prompt) to a global score and a (G, G) heatmap, low where the image fails the prompt.
Method = Callable[[Image.Image, str], tuple[float, np.ndarray]]


def method_of(scorer, name: str, grid: int = GRID, analyses: dict | None = None) -> Method:
    """The map methods rank images by the cosine; phrases by the faithfulness its analysis computes on the way,
    which is what the pipeline pairs images by (workers/pairing.py: ranking_score). Phrases analyses are kept in
    `analyses`, keyed by id(image), so the explanations reuse them instead of analysing every scene again."""
    from workers import localize
    from workers.localize.phrases import analyse
    from workers.pairing import ranking_score

    if name == "phrases":
        def phrases(image: Image.Image, prompt: str) -> tuple[float, np.ndarray]:
            analysis = analyse(scorer, image, prompt, grid)
            if analyses is not None:
                analyses[id(image)] = analysis
            return ranking_score(analysis.global_cosine, analysis.log_faithfulness), analysis.cells()
        return phrases
    return lambda image, prompt: localize.score(scorer, image, prompt, grid, name)


def explanation_correct(case: Case, findings: list) -> bool:
    """The first finding names the swapped object's phrase and what it was swapped to."""
    if not findings:
        return False
    first = findings[0]
    words = first.alternative.split()
    return first.phrase == case.phrase and (case.alternative in words or PLURALS.get(case.alternative) in words)


def in_counted_group(case: Case) -> bool:
    """Whether a colour or kind swap changed one member of a group of two or more."""
    return next(group for group in parse(case.prompt).groups if group.text() == case.phrase).count > 1


def explanation_table(scorer, cases: list[Case], analyses: dict | None = None) -> dict:
    """Correctness on colour and kind swaps, and how often a scene gets any finding at all: a finding on a faithful
    scene is a false alarm, one on a corrupted scene a detection (of any violation type). `analyses` (see
    method_of) saves analysing scenes the phrases method has already analysed."""
    from workers.explain import findings
    from workers.localize.phrases import analyse

    analyses = analyses or {}

    def explain(image: Image.Image, prompt: str) -> list:
        analysis = analyses.get(id(image)) or analyse(scorer, image, prompt, GRID)
        return findings(analysis, GRID)

    rows: dict[str, list[bool]] = {"colour_swap": [], "kind_swap": [], "single_object": [], "group_member": []}
    alarms, detections = [], []
    for case in cases:
        found = explain(case.corrupted, case.prompt)
        detections.append(bool(found))
        alarms.append(bool(explain(case.faithful, case.prompt)))
        if case.violation in ("colour_swap", "kind_swap"):
            right = explanation_correct(case, found)
            rows[case.violation].append(right)
            # A changed member of a counted group must be named by an odd-one caption ("two red apples and a blue
            # apple"), which the scorer reads less surely than a single object's.
            rows["group_member" if in_counted_group(case) else "single_object"].append(right)
    rows["overall"] = rows["colour_swap"] + rows["kind_swap"]
    # A small run may draw no swap of a counted group: a row without cases is left out, not reported as nan.
    table = {name: {"correct": float(np.mean(hits)), "n": len(hits), "ci95": share_interval(hits)}
             for name, hits in rows.items() if hits}
    for name, hits in (("faithful_with_findings", alarms), ("corrupted_with_findings", detections)):
        table[name] = {"share": float(np.mean(hits)), "n": len(hits), "ci95": share_interval(hits)}
    return table


def lowest_cell_hits(cells: np.ndarray, mask: np.ndarray) -> bool:
    from workers.scoring import grid_boxes

    grid = cells.shape[0]
    left, top, right, bottom = grid_boxes(mask.shape[1], mask.shape[0], grid)[int(np.argmin(cells))]
    return bool(mask[top:bottom, left:right].any())


def evaluate(methods: dict[str, Method], cases: list[Case]) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """Every method on every case, the methods taking turns case by case, so that their times per image are
    measured side by side: run one after another, a machine whose speed drifts over the minutes of a run moved the
    ratio of the same two methods from 2.5 to 3.1 between runs."""
    rows = {name: {v: [] for v in VIOLATIONS} for name in methods}
    heatmaps: dict[str, list[np.ndarray]] = {name: [] for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    for case in cases:
        for name, method in methods.items():
            started = time.perf_counter()
            good, _ = method(case.faithful, case.prompt)
            bad, cells = method(case.corrupted, case.prompt)
            seconds[name] += time.perf_counter() - started
            field = upsample(normalise(cells), IMAGE_SIZE, IMAGE_SIZE)
            heatmaps[name].append(field)
            rows[name][case.violation].append(
                (good > bad, lowest_cell_hits(cells, case.mask), auroc(1.0 - field, case.mask)))
    return {name: _table(rows[name], seconds[name] / (2 * len(cases))) for name in methods}, heatmaps


def _table(rows: dict[str, list[tuple[bool, bool, float]]], per_image: float) -> dict:
    """Per violation type and overall: each measure's mean over the scenes and its 95% interval."""
    rows = rows | {"overall": [row for v in VIOLATIONS for row in rows[v]]}
    table = {}
    for name, results in rows.items():
        hits, points, areas = zip(*results)
        table[name] = {
            "pair_accuracy": float(np.mean(hits)),
            "pointing_game": float(np.mean(points)),
            "auroc": float(np.mean(areas)),
            "seconds_per_image": per_image,
            "n": len(results),
            "ci95": {"pair_accuracy": share_interval(hits), "pointing_game": share_interval(points),
                     "auroc": mean_interval(areas)},
        }
    return table


# The targets of docs/localization.md ("Against the targets"), for the default method.
TARGETS = {"pair_accuracy": 0.95, "pointing_game": 0.85, "auroc": 0.90}
EXPLANATION_TARGET = 0.80
COST_TARGET = 3.0  # seconds per image, times grid's


def _with_interval(value: float, interval: tuple[float, float]) -> str:
    return f"{value:.3f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def print_table(method: str, table: dict) -> None:
    print(f"\n{method} (95% intervals in brackets)")
    print(f"{'violation':<16}{'n':>5}{'pair acc':>20}{'pointing':>20}{'AUROC':>20}{'s/image':>9}")
    for name, row in table.items():
        cells = "".join(f"{_with_interval(row[m], row['ci95'][m]):>20}" for m in TARGETS)
        print(f"{name:<16}{row['n']:>5}{cells}{row['seconds_per_image']:>9.4f}")


def verdict(value: float, interval: tuple[float, float], target: float) -> str:
    """Met or missed when the whole 95% interval lies on one side of the target; otherwise these pairs cannot
    tell, and the measured value says which side it leans to."""
    if interval[0] >= target:
        return "met"
    if interval[1] < target:
        return "missed"
    return f"undecided (leans {'met' if value >= target else 'missed'})"


def target_verdicts(results: dict, explanations: dict, method: str) -> list[tuple[str, str]]:
    """(what, verdict) for each target the run measured for ``method``; the explanations are the patch
    analysis's whatever the method."""
    out = []
    for name, row in results.get(method, {}).items():
        for measure, target in TARGETS.items():
            out.append((f"{measure} >= {target} ({name})",
                        verdict(row[measure], row["ci95"][measure], target)))
    row = explanations["overall"]
    out.append((f"explanations >= {EXPLANATION_TARGET}", verdict(row["correct"], row["ci95"], EXPLANATION_TARGET)))
    grid = results.get("grid", {}).get("overall")
    if grid and method in results and method != "grid":
        ratio = results[method]["overall"]["seconds_per_image"] / grid["seconds_per_image"]
        out.append((f"cost <= {COST_TARGET}x grid", f"{'met' if ratio <= COST_TARGET else 'missed'} ({ratio:.2f}x)"))
    return out


def print_side_by_side(results: dict) -> None:
    """One row per method and violation type, so methods compare at a glance."""
    print(f"\n{'method':<12}{'violation':<16}{'pair acc':>9}{'pointing':>9}{'AUROC':>7}{'s/image':>9}{'× grid':>8}")
    base = results.get("grid", {}).get("overall", {}).get("seconds_per_image")
    for method, table in results.items():
        for name, row in table.items():
            ratio = f"{row['seconds_per_image'] / base:>8.1f}" if base else f"{'':>8}"
            print(f"{method:<12}{name:<16}{row['pair_accuracy']:>9.3f}{row['pointing_game']:>9.3f}"
                  f"{row['auroc']:>7.3f}{row['seconds_per_image']:>9.4f}{ratio}")


def methods_figure(cases: list[Case], maps: dict[str, list[np.ndarray]], path: Path) -> None:
    """The same corrupted scenes under every method: scene, ground truth, then one heatmap per method."""
    from matplotlib.figure import Figure

    from workers.heatmap import COLORMAP

    picked = [next(i for i, c in enumerate(cases) if c.violation == v) for v in VIOLATIONS]
    columns = 2 + len(maps)
    fig = Figure(figsize=(1.55 * columns, 1.85 * len(picked)), dpi=90, layout="constrained")
    axes = fig.subplots(len(picked), columns)
    for row, k in zip(axes, picked):
        case = cases[k]
        grey = np.asarray(case.corrupted.convert("L").convert("RGB"), dtype=np.float32) / 255.0
        panels = [(case.corrupted, textwrap.fill(case.prompt, 22) + f"\n{case.violation}"),
                  (case.mask, "violating object")]
        panels += [(0.55 * grey + 0.45 * COLORMAP(fields[k])[..., :3], f"{name}\n(red = low)") for name, fields in maps.items()]
        for ax, (picture, title) in zip(row, panels):
            ax.imshow(picture, interpolation="nearest", cmap="gray" if picture is case.mask else None)
            ax.set_title(title, fontsize=7)
            ax.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def figure(cases: list[Case], heatmaps: list[np.ndarray], path: Path, per_type: int = 2) -> None:
    """A grid of examples: faithful scene, corrupted scene, heatmap over it, ground-truth mask."""
    from matplotlib.figure import Figure

    from workers.heatmap import COLORMAP

    picked = [k for v in VIOLATIONS for k in [i for i, c in enumerate(cases) if c.violation == v][:per_type]]
    fig = Figure(figsize=(7, 2.1 * len(picked)), dpi=90, layout="constrained")
    axes = fig.subplots(len(picked), 4)
    for row, k in zip(axes, picked):
        case = cases[k]
        grey = np.asarray(case.corrupted.convert("L").convert("RGB"), dtype=np.float32) / 255.0
        blend = 0.55 * grey + 0.45 * COLORMAP(heatmaps[k])[..., :3]
        for ax, picture, title in zip(
            row,
            [case.faithful, case.corrupted, blend, case.mask],
            [textwrap.fill(case.prompt, 26) + "\nfaithful", f"corrupted:\n{case.violation}", "7x7 grid heatmap\n(red = low)",
             "violating object\n(ground truth)"],
        ):
            ax.imshow(picture, interpolation="nearest", cmap="gray" if picture is case.mask else None)
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="scene pairs (split evenly over the violation types)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--scorer", default=None, help="open_clip ARCH@PRETRAINED (default: the mini preset's)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the tables here as JSON")
    parser.add_argument("--figure", type=Path, default=PROJECT_ROOT / "docs" / "localization.png")
    parser.add_argument("--methods-figure", type=Path, default=PROJECT_ROOT / "docs" / "localization_methods.png")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: all of workers.localize)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from tipai_queue.model_specs import method_problem
    from tipai_queue.presets import get_preset
    from tipai_queue.settings import get_settings
    from workers.localize import METHODS, check_method
    from workers.scoring import load_scorer

    torch.set_num_threads(args.threads)
    spec = args.scorer or get_preset("mini").scorer
    names = [check_method(name) for name in args.methods.split(",")] if args.methods else list(METHODS)
    unable = {name: problem for name in names if (problem := method_problem(name, spec))}
    if args.methods and unable:
        parser.error("; ".join(unable.values()))
    for name, problem in unable.items():
        print(f"{name} left out: {problem}")
    names = [name for name in names if name not in unable]
    scorer = load_scorer(spec, "cpu", PROJECT_ROOT / ".tipai" / "models")
    cases = make_cases(args.n, args.seed)
    analyses: dict = {}
    results, maps = evaluate({name: method_of(scorer, name, analyses=analyses) for name in names}, cases)
    for name, table in results.items():
        print_table(name, table)
    if "grid" in maps:
        figure(cases, maps["grid"], args.figure)
        print(f"figure: {args.figure}")
    print_side_by_side(results)
    methods_figure(cases, maps, args.methods_figure)
    print(f"methods figure: {args.methods_figure}")
    explanations = explanation_table(scorer, cases, analyses)
    print("\nexplanation correctness (first finding names the phrase and the swapped-in colour or kind):")
    for name, row in explanations.items():
        if "correct" in row:
            print(f"  {name:<15}{_with_interval(row['correct'], row['ci95'])}  (n = {row['n']})")
    print("scenes with any finding (faithful: false alarms; corrupted: detections):")
    for name in ("faithful_with_findings", "corrupted_with_findings"):
        row = explanations[name]
        print(f"  {name.split('_')[0]:<15}{_with_interval(row['share'], row['ci95'])}  (n = {row['n']})")
    default = get_settings().method
    print(f"\ntargets for the default method, {default} (by the 95% intervals):")
    verdicts = target_verdicts(results, explanations, default)
    for what, said in verdicts:
        print(f"  {what:<40}{said}")
    if args.json_path:
        tables = results | {"explanations": explanations, "targets": {"method": default} | dict(verdicts)}
        Path(args.json_path).write_text(json.dumps(tables, indent=2) + "\n")


if __name__ == "__main__":
    main()
