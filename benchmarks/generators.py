"""Two diffusers folders side by side, GenEval-style: the 20 mini prompts × the given seeds drawn by each at the
mini preset's steps and guidance, every image read by the committed mini CLIP (or another reader), per category,
and image by image how many pass with one and fail with the other, with a two-sided sign test on those that differ.

    python -m benchmarks.generators --before /tmp/before/models/mini/sd --after models/mini/sd --seeds 0-47
    python -m benchmarks.generators ... --scorer tipai-mini-clip@/tmp/other-reader.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from sceneworld.geneval import by_category, verdicts
from sceneworld.paths import MINI_DIR, PROMPTS, clip_spec


def seeds(text: str) -> list[int]:
    """``--seeds`` as ``tipai run`` reads it ("0-47", "0,1,5-7"), its errors as argparse's."""
    from tipai_queue.batch import BatchError
    from tipai_queue.cli import parse_seeds

    try:
        return parse_seeds(text)
    except BatchError as error:
        raise argparse.ArgumentTypeError("; ".join(e.removeprefix("--seeds: ") for e in error.errors)) from None


def sign_test(gained: int, lost: int) -> float:
    """Two-sided exact sign test: how likely so uneven a split of the images that changed is, were either way as
    likely."""
    changed = gained + lost
    if changed == 0:
        return 1.0
    tail = sum(math.comb(changed, k) for k in range(min(gained, lost) + 1)) / 2**changed
    return min(1.0, 2 * tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a diffusers folder")
    parser.add_argument("--after", type=Path, required=True, help="another one")
    parser.add_argument("--seeds", type=seeds, default="0-15", help="e.g. 0-47 or 0,1,5-7 (default 0-15)")
    parser.add_argument("--scorer", default=clip_spec(),
                        help="the reader, ARCH@CHECKPOINT (default: the committed mini CLIP)")
    parser.add_argument("--json", type=Path, help="write both generators' verdicts per prompt and image here")
    args = parser.parse_args()

    import torch

    from tipai_queue.presets import get_preset
    from workers.generation import load_generator
    from workers.scoring import load_scorer

    torch.set_num_threads(2)
    preset = get_preset("mini")
    scorer = load_scorer(args.scorer, "cpu", MINI_DIR)
    passed = {}
    for name in ("before", "after"):
        started = time.monotonic()
        generator = load_generator(str(getattr(args, name)), "cpu", MINI_DIR)
        passed[name] = verdicts(generator, scorer, PROMPTS, args.seeds, preset.steps, preset.guidance)
        scores = by_category(PROMPTS, passed[name])
        print(f"{name:6} {getattr(args, name)}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
              + f" ({time.monotonic() - started:.0f} s)", flush=True)
    pairs = [(a, b) for key in passed["before"] for a, b in zip(passed["before"][key], passed["after"][key])]
    gained = sum(b and not a for a, b in pairs)
    lost = sum(a and not b for a, b in pairs)
    print(f"{len(pairs)} images: {gained} pass only after, {lost} only before; sign test p = "
          f"{sign_test(gained, lost):.3g}")
    if args.json:
        args.json.write_text(json.dumps(passed, indent=1) + "\n")


if __name__ == "__main__":
    main()
