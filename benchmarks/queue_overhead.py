"""Queue overhead: the same images through the queue and through a plain in-process loop, side by side.

Both do the same work per image with the same models: generate, score with the job's localization method and
explain, draw the heatmap, write the PNGs; and per prompt pick the pair and draw the comparison. Both are warmed up first (models loaded), so the
ratio measures what the queue costs: broker round trips, database writes, process hand-offs.

    python -m benchmarks.queue_overhead --prompts 10 --images 4 --json results.json
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import isolate, running_stack, wait_finished, write_json


def prompts(count: int, tag: str) -> list[str]:
    subjects = ["a red car on the beach", "a dog and a cat", "three red apples on a plate", "a ball under a chair"]
    return [f"{subjects[i % len(subjects)]}, take {tag}{i}" for i in range(count)]


def through_queue(settings, texts: list[str], images: int) -> float:
    from tipai_queue.batch import batch_from_prompts, build_options
    from tipai_queue.submit import submit

    batch = batch_from_prompts(texts, build_options(settings, images=images), settings)
    started = time.perf_counter()
    job = submit(batch, settings).job_id
    wait_finished(job)
    return time.perf_counter() - started


def direct_loop(settings, texts: list[str], images: int) -> float:
    """What a single script would do, with the models already in memory."""
    from tipai_queue import artifacts
    from tipai_queue.batch import build_options
    from tipai_queue.presets import get_preset
    from workers import heatmap, model_cache, pairing
    from workers.devices import pick_device
    from workers.explain import score_and_explain

    options = build_options(settings, images=images)
    preset = get_preset(options.preset)
    device = pick_device(settings.device)
    generator = model_cache.get_generator(preset.generator, device, settings.models_dir)
    scorer = model_cache.get_scorer(preset.scorer, device, settings.models_dir)
    root = settings.artifact_root
    started = time.perf_counter()
    for index, text in enumerate(texts):
        prompt_id = f"p{index}"
        shown = {}
        for seed in options.seeds:
            [picture] = generator.generate(text, [seed], options.width, options.height, options.steps, options.guidance)
            artifacts.save_png(picture, artifacts.image_path(root, "direct", prompt_id, seed))
            scored = score_and_explain(scorer, picture, text, options.grid, options.method)
            image_id = f"direct_{prompt_id}_{seed}"
            cells = scored.cells.ravel().tolist()
            figure = heatmap.render_heatmap(picture, cells, options.grid, title=text)
            artifacts.save_png(figure, artifacts.heatmap_path(root, "direct", image_id))
            shown[image_id] = (seed, scored, cells, picture)
        chosen, rejected = pairing.choose_pair([
            pairing.Candidate(i, seed, pairing.ranking_score(scored.global_cosine, scored.log_faithfulness))
            for i, (seed, scored, _, _) in shown.items()
        ])

        def panel(candidate):
            _, scored, cells, picture = shown[candidate.image_id]
            label = pairing.score_label(scored.global_cosine, scored.log_faithfulness)
            return picture, heatmap.overlay(picture, cells, options.grid), label

        comparison = pairing.render_comparison(text, panel(chosen), panel(rejected))
        artifacts.save_png(comparison, artifacts.comparison_path(root, "direct", prompt_id))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    isolate()
    with running_stack() as settings:
        through_queue(settings, prompts(1, "warm"), args.images)  # loads the models in the workers
        direct_loop(settings, prompts(1, "warm"), args.images)  # and in this process
        n_images = args.prompts * args.images
        queue_s = through_queue(settings, prompts(args.prompts, "q"), args.images)
        direct_s = direct_loop(settings, prompts(args.prompts, "d"), args.images)
    write_json(
        args.json_path,
        {
            "images": n_images,
            "queue_seconds": round(queue_s, 3),
            "direct_seconds": round(direct_s, 3),
            "queue_images_per_s": round(n_images / queue_s, 3),
            "direct_images_per_s": round(n_images / direct_s, 3),
            "ratio": round(direct_s / queue_s, 3),
        },
    )


if __name__ == "__main__":
    main()
