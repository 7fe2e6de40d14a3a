"""The Celery canvas of a job: per prompt, a chord whose header runs generate → score → heatmap for each image and
whose body pairs the prompt's best and worst image. Tasks are named, not imported, so the submitter (and the
demo) never import torch."""

from __future__ import annotations

from celery import chain, chord
from celery.canvas import Signature

from tipai_queue.celery_app import app

STAGES = ("generate", "score", "heatmap")


def task(name: str, *args: str) -> Signature:
    return app.signature(f"tipai.{name}", args=args, immutable=True)


def image_chain(image_id: str, from_stage: str = "generate") -> Signature:
    return chain(*(task(stage, image_id) for stage in STAGES[STAGES.index(from_stage) :]))


def prompt_chord(job_id: str, prompt_id: str, image_ids: list[str]) -> Signature:
    return chord([image_chain(i) for i in image_ids], task("pair", job_id, prompt_id))


def resume_chain(job_id: str, prompt_id: str, image_id: str, from_stage: str) -> Signature:
    """For reconcile: finish one image, then try pairing its prompt (pair waits until all its images are done)."""
    return chain(image_chain(image_id, from_stage), task("pair", job_id, prompt_id))
