"""The GPU path against the CPU, side by side: the mini preset's generator and every localization method on each
device, per image, and whether the GPU (half precision, workers/devices.py) finds what the CPU finds.

- Localization: the localization benchmark's scene pairs, each method on both devices taking turns case by case;
  per device pair accuracy, pointing game, AUROC and seconds per image, then how often the two devices put the
  lowest cell of a map in the same place and how far apart their normalised maps are (0..1), and the patch
  analysis's explanation correctness and false alarms on each.
- Generation: the 20 mini prompts × N seeds, one image per call as a generation task draws it; seconds per image on
  each device and the GenEval-style score of each device's images, all read by the CPU scorer, so that only the
  generator's device differs. A seed draws other noise on a GPU than on the CPU, so the images differ; the scores
  say whether they are as good.

    python -m benchmarks.devices                 # cuda against cpu
    python -m benchmarks.devices --n 40 --seeds 2 --device cuda:1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.localization import GRID, PROJECT_ROOT, evaluate, explanation_table, make_cases, method_of

MODELS_DIR = PROJECT_ROOT / ".tipai" / "models"


def _recording(method, cells: list[np.ndarray]):
    def recorded(image, prompt):
        score, found = method(image, prompt)
        cells.append(found)
        return score, found
    return recorded


def localization_side_by_side(scorers: dict, methods: list[str], n: int, seed: int) -> dict:
    from workers.heatmap import normalise

    cases = make_cases(n, seed)
    analyses = {device: {} for device in scorers}
    # Every map each method gives on each device, faithful and corrupted scenes alike, in the order evaluated.
    cells = {(name, device): [] for name in methods for device in scorers}
    results, _ = evaluate({f"{name}@{device}": _recording(method_of(scorer, name, analyses=analyses[device]),
                                                          cells[name, device])
                           for name in methods for device, scorer in scorers.items()}, cases)
    table: dict = {}
    for name in methods:
        rows = {device: results[f"{name}@{device}"]["overall"] for device in scorers}
        cpu, other = (cells[name, device] for device in scorers)
        table[name] = {
            device: {k: row[k] for k in ("pair_accuracy", "pointing_game", "auroc", "seconds_per_image")}
            for device, row in rows.items()
        } | {"same_lowest_cell": float(np.mean([np.argmin(a) == np.argmin(b) for a, b in zip(cpu, other)])),
             "mean_abs_map_difference": float(np.mean([np.abs(normalise(a) - normalise(b)).mean()
                                                       for a, b in zip(cpu, other)]))}
    if "phrases" in methods:
        for device, scorer in scorers.items():
            explained = explanation_table(scorer, cases, analyses[device])
            table["phrases"][device] |= {"explanations": explained["overall"]["correct"],
                                         "false_alarms": explained["faithful_with_findings"]["share"]}
    return table


def generation_side_by_side(generators: dict, reader, seeds: list[int]) -> dict:
    from sceneworld.captions import parse
    from sceneworld.paths import PROMPTS
    from sceneworld.zeroshot import passes
    from tipai_queue.presets import get_preset

    preset = get_preset("mini")
    prompts = [entry["prompt"] for entry in json.loads(PROMPTS.read_text())]
    seconds = dict.fromkeys(generators, 0.0)
    passed: dict[str, list[bool]] = {device: [] for device in generators}
    for prompt in prompts:
        for seed in seeds:
            for device, generator in generators.items():  # taking turns, as the methods do
                started = time.perf_counter()
                [image] = generator.generate(prompt, [seed], 64, 64, preset.steps, preset.guidance)
                seconds[device] += time.perf_counter() - started
                passed[device].append(passes(reader, image, parse(prompt)))
    images = len(prompts) * len(seeds)
    return {device: {"seconds_per_image": seconds[device] / images, "geneval": float(np.mean(passed[device])),
                     "images": images} for device in generators}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (cuda, cuda:N)")
    parser.add_argument("--n", type=int, default=100, help="scene pairs of the localization benchmark")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--seeds", type=int, default=4, help="images per mini prompt")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: all the scorer runs)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--json", dest="json_path", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from tipai_queue.model_specs import method_problem
    from tipai_queue.presets import get_preset
    from workers.devices import usable_device
    from workers.generation import load_generator
    from workers.localize import METHODS, check_method
    from workers.scoring import load_scorer

    try:
        device = usable_device(args.device)
    except ValueError as error:
        sys.exit(f"error: --device: {error}")
    if device == "cpu":
        parser.error("--device names the GPU to compare with the CPU: cuda or cuda:N")
    torch.set_num_threads(args.threads)
    preset = get_preset("mini")
    names = [check_method(name) for name in args.methods.split(",")] if args.methods else list(METHODS)
    names = [name for name in names if not method_problem(name, preset.scorer)]
    where = torch.cuda.get_device_name(device)
    print(f"cpu ({args.threads} threads) against {device} ({where}); torch {torch.__version__}")

    devices = ("cpu", device)
    scorers = {d: load_scorer(preset.scorer, d, MODELS_DIR) for d in devices}
    localization = localization_side_by_side(scorers, names, args.n, args.seed)
    print(f"\nlocalization, {args.n} scene pairs, {GRID}x{GRID}: each measure on cpu / {device}")
    print(f"{'method':<12}{'pair acc':>14}{'pointing':>14}{'AUROC':>14}{'ms / image':>16}{'speed-up':>10}"
          f"{'same lowest':>13}{'map diff':>10}")
    for name, row in localization.items():
        a, b = row["cpu"], row[device]
        pair = "".join(f"{f'{a[k]:.3f} / {b[k]:.3f}':>14}" for k in ("pair_accuracy", "pointing_game", "auroc"))
        ms = f"{1000 * a['seconds_per_image']:.1f} / {1000 * b['seconds_per_image']:.1f}"
        print(f"{name:<12}{pair}{ms:>16}{a['seconds_per_image'] / b['seconds_per_image']:>9.1f}x"
              f"{row['same_lowest_cell']:>13.3f}{row['mean_abs_map_difference']:>10.4f}")
    if "phrases" in localization:
        a, b = localization["phrases"]["cpu"], localization["phrases"][device]
        print(f"phrases explanations {a['explanations']:.3f} / {b['explanations']:.3f}, "
              f"false alarms {a['false_alarms']:.3f} / {b['false_alarms']:.3f}")

    generators = {d: load_generator(preset.generator, d, MODELS_DIR) for d in devices}
    generation = generation_side_by_side(generators, scorers["cpu"], list(range(args.seeds)))
    a, b = generation["cpu"], generation[device]
    print(f"\ngeneration, {a['images']} images of the mini prompts ({preset.steps} steps, guidance {preset.guidance}),"
          f" read by the CPU scorer: cpu / {device}")
    print(f"  ms per image {1000 * a['seconds_per_image']:.1f} / {1000 * b['seconds_per_image']:.1f} "
          f"({a['seconds_per_image'] / b['seconds_per_image']:.1f}x); GenEval-style {a['geneval']:.3f} / "
          f"{b['geneval']:.3f}")
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    print(f"\npeak GPU memory allocated: {peak:.0f} MiB (the scorer and the generator)")
    if args.json_path:
        args.json_path.write_text(json.dumps({"device": where, "torch": torch.__version__, "threads": args.threads,
                                              "peak_gpu_mib": peak, "localization": localization,
                                              "generation": generation}, indent=2))


if __name__ == "__main__":
    main()
