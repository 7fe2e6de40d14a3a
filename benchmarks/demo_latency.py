"""How long the demo keeps a user waiting: one prompt × 4 images submitted exactly as the Generate button does, on a
private stack with one generation worker and one CPU worker.

time-to-first-image: from pressing Generate (validation and submit included) to the first image row with a
picture; time-to-full-result: to the pair row, which is when the page shows best vs worst and the patch analysis.
Each preset is measured twice: cold (the first job after the workers start, so it includes loading the models)
and warm (the same prompt again as a new job, as every later user sees it).

    python -m benchmarks.demo_latency --json results.json            # tiny
    python -m benchmarks.demo_latency --preset tiny --preset mini
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import isolate, running_stack, write_json

PROMPT = "a red car on the beach"
POLL_S = 0.05


def one_job(settings, preset: str) -> tuple[float, float]:
    from sqlalchemy import func, select

    from tipai_queue import db
    from tipai_queue.batch import batch_from_prompts, build_options
    from tipai_queue.models import Image, Pair
    from tipai_queue.submit import submit

    started = time.perf_counter()
    batch = batch_from_prompts([PROMPT], build_options(settings, preset=preset, images=4), settings, source="benchmark")
    job_id = submit(batch, settings, force=True).job_id
    first_image = None
    while True:
        with db.session_scope() as session:
            generated = session.scalar(select(func.count(Image.generated_at)).where(Image.job_id == job_id))
            paired = session.scalar(select(func.count()).where(Pair.job_id == job_id))
        now = time.perf_counter() - started
        if generated and first_image is None:
            first_image = now
        if paired:
            return first_image, now
        if now > 1800:
            raise TimeoutError(f"job {job_id} had no pair after {now:.0f} s")
        time.sleep(POLL_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", help="Preset to measure (repeatable). Default: tiny.")
    parser.add_argument("--json", metavar="FILE", help="Also write the results here.")
    args = parser.parse_args()
    presets = args.preset or ["tiny"]
    isolate(presets[0])
    results = {}
    with running_stack() as settings:
        for preset in presets:
            cold = one_job(settings, preset)
            warm = one_job(settings, preset)
            results[preset] = {
                "first_image_s": round(warm[0], 2),
                "full_result_s": round(warm[1], 2),
                "cold_first_image_s": round(cold[0], 2),
                "cold_full_result_s": round(cold[1], 2),
            }
            print(
                f"{preset}: first image {warm[0]:.2f} s, full result {warm[1]:.2f} s "
                f"(cold workers: {cold[0]:.2f} s / {cold[1]:.2f} s)",
                flush=True,
            )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
