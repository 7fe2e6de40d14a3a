"""Task bodies. Each task takes ids, reads its inputs from Postgres and the artifact store, writes its outputs
with an upsert, and skips work already done, so a redelivered or repeated task is harmless."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import redis.exceptions
import sqlalchemy.exc
from billiard.common import terminate_handler_fired
from celery import signals
from celery.exceptions import Ignore
from kombu.exceptions import OperationalError as BrokerError
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from tipai_queue import artifacts, db
from tipai_queue.celery_app import app
from tipai_queue.models import Image, ImageStatus, Job, Pair, Score
from tipai_queue.settings import get_settings
from workers import heatmap as heatmaps
from workers import pairing

log = logging.getLogger(__name__)

# Only a lost connection is worth retrying; a bad input or a missing model fails the same way every time.
RETRYABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    BrokerError,
)
TASK_OPTIONS = {
    "bind": True,
    "autoretry_for": RETRYABLE,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": get_settings().db_retry_max,
}


def now() -> datetime:
    return datetime.now(UTC)


@signals.worker_init.connect
def check_device_and_preload_model_code(sender, **_) -> None:
    """A generation worker refuses, before it takes a task, a device torch cannot use here (TIPAI_DEVICE=cuda on a
    machine without a GPU): it would fail every image sent to it, where a worker that never starts leaves them
    queued for one that can run them. Its parent also imports the model libraries (code only: no weights, no CUDA),
    so every pool process forks with them loaded and one that replaces a dead process is working in a moment
    instead of spending seconds re-importing torch and diffusers."""
    if "gpu" not in sender.app.amqp.queues.consume_from:
        return
    from workers.devices import check_explicit_device

    requested = get_settings().device
    try:
        check_explicit_device(requested)
    except ValueError as error:
        # Celery logs and drops an exception from a signal handler; SystemExit is not an Exception, so it ends the
        # worker with a non-zero status, its message on stderr.
        raise SystemExit(f"error: TIPAI_DEVICE={requested}: {error}") from None
    import workers.model_cache  # noqa: F401


class Stage:
    """Loads an image row and its job for one stage, marks it running, and records success or failure."""

    def __init__(self, task, image_id: str, running: str, done_at: str):
        self.task, self.image_id, self.running, self.done_at = task, image_id, running, done_at

    def begin(self) -> tuple[Image, Job] | None:
        """None: nothing to do (cancelled, failed, or this stage already finished by an earlier delivery)."""
        with db.session_scope() as session:
            image = session.get(Image, self.image_id, with_for_update=True)
            if image is None:
                log.warning("image %s has no row; dropping the task", self.image_id)
                raise Ignore()
            job = session.get(Job, image.job_id)
            if job.cancelled_at is not None or image.status == ImageStatus.FAILED:
                return None
            if getattr(image, self.done_at) is not None:
                return None
            image.status = self.running
            image.updated_at = now()
            image.worker = self.task.request.hostname
            if self.running == ImageStatus.GENERATING:
                image.attempts += 1
            return image, job

    def finish(self, **values) -> None:
        with db.session_scope() as session:
            image = session.get(Image, self.image_id, with_for_update=True)
            for key, value in values.items():
                setattr(image, key, value)
            image.error = None
            image.updated_at = now()

    def fail(self, exc: BaseException) -> None:
        """Record why, then let the prompt be paired from the images that did succeed."""
        message = f"{type(exc).__name__}: {exc}"
        with db.session_scope() as session:
            image = session.get(Image, self.image_id, with_for_update=True)
            image.status = ImageStatus.FAILED
            image.error = message[:4000]
            image.updated_at = now()
            job_id, prompt_id = image.job_id, image.prompt_id
        app.signature("tipai.pair", args=(job_id, prompt_id), immutable=True).apply_async()


def run_stage(stage: Stage, work):
    """Run `work`; a retryable error is left to Celery's autoretry, any other error fails the image for good,
    unless this process is being terminated: Celery cancels a running task with SIGTERM when the broker connection
    drops, and an error raised after that is the interruption's, not the image's. Its message is redelivered."""
    try:
        return work()
    except RETRYABLE:
        raise
    except Exception as exc:
        if terminate_handler_fired():
            log.warning("image %s interrupted by a terminate signal (%r); leaving it for redelivery",
                        stage.image_id, exc)
            raise
        stage.fail(exc)
        raise


@app.task(name="tipai.generate", **TASK_OPTIONS)
def generate(self, image_id: str) -> str:
    from workers import model_cache
    from workers.devices import pick_device

    settings = get_settings()
    stage = Stage(self, image_id, ImageStatus.GENERATING, "generated_at")
    begun = stage.begin()
    if begun is None:
        return image_id
    image, job = begun
    target = artifacts.image_path(settings.artifact_root, job.job_id, image.prompt_id, image.seed)

    def work() -> None:
        device = pick_device(settings.device)
        generator = model_cache.get_generator(job.generator, device, settings.models_dir)
        started = time.perf_counter()
        [picture] = generator.generate(image.prompt, [image.seed], job.width, job.height, job.steps, job.guidance)
        elapsed = time.perf_counter() - started
        time.sleep(settings.slow_tasks_s)  # 0 except in fault drills, which need the kill to land here
        artifacts.save_png(picture, target)
        stage.finish(
            status=ImageStatus.GENERATED,
            path=str(target),
            model=job.generator,
            device=device,
            generate_s=elapsed,
            generated_at=now(),
        )

    run_stage(stage, work)
    return image_id


@app.task(name="tipai.score", **TASK_OPTIONS)
def score(self, image_id: str) -> str:
    from workers import model_cache
    from workers.devices import pick_device
    from workers.explain import score_and_explain, to_json
    from workers.scoring import score_01

    settings = get_settings()
    stage = Stage(self, image_id, ImageStatus.SCORING, "scored_at")
    begun = stage.begin()
    if begun is None:
        return image_id
    image, job = begun

    def work() -> None:
        device = pick_device(settings.device)
        scorer = model_cache.get_scorer(job.scorer, device, settings.models_dir)
        with PILImage.open(image.path) as handle:
            picture = handle.convert("RGB")
        started = time.perf_counter()
        scored = score_and_explain(scorer, picture, image.prompt, job.grid, job.method)
        score_s = time.perf_counter() - started
        values = {
            "prompt": image.prompt,
            "global_score": scored.global_cosine,
            "global_score_01": score_01(scored.global_cosine),
            "log_faithfulness": scored.log_faithfulness,
            "patch_scores": scored.cells.ravel().tolist(),
            "grid": job.grid,
            "method": job.method,
            "explanation": to_json(scored.findings),
            "scorer": job.scorer,
            "truncated": scorer.is_truncated(image.prompt),
            "score_s": score_s,
        }
        time.sleep(settings.slow_tasks_s)  # 0 except in fault drills, which need the kill to land here
        with db.session_scope() as session:
            session.execute(
                insert(Score)
                .values(image_id=image_id, **values)
                .on_conflict_do_update(index_elements=["image_id"], set_=values)
            )
        stage.finish(status=ImageStatus.SCORED, scored_at=now())

    run_stage(stage, work)
    return image_id


@app.task(name="tipai.heatmap", **TASK_OPTIONS)
def heatmap(self, image_id: str) -> str:
    settings = get_settings()
    stage = Stage(self, image_id, ImageStatus.RENDERING, "heatmap_at")
    begun = stage.begin()
    if begun is None:
        return image_id
    image, job = begun

    def work() -> None:
        with db.session_scope() as session:
            scored = session.get(Score, image_id)
            cells, method = scored.patch_scores, scored.method
        target = artifacts.heatmap_path(settings.artifact_root, job.job_id, image_id)
        with PILImage.open(image.path) as handle:
            figure = heatmaps.render_heatmap(
                handle.convert("RGB"), cells, job.grid, title=image.prompt, unit=heatmaps.UNITS.get(method, method)
            )
        artifacts.save_png(figure, target)
        stage.finish(status=ImageStatus.DONE, heatmap_path=str(target), heatmap_at=now())

    run_stage(stage, work)
    return image_id


@app.task(name="tipai.pair", **TASK_OPTIONS)
def pair(self, job_id: str, prompt_id: str) -> str | None:
    """Chord body (and reconcile's fallback): pair the prompt once every image is done or failed."""
    settings = get_settings()
    with db.session_scope() as session:
        job = session.get(Job, job_id)
        rows = session.execute(
            select(Image, Score)
            .outerjoin(Score, Score.image_id == Image.image_id)
            .where(Image.job_id == job_id, Image.prompt_id == prompt_id)
        ).all()
    if job is None or job.cancelled_at is not None or not rows:
        return None
    if any(image.status not in ImageStatus.TERMINAL for image, _ in rows):
        return None  # another image is still on its way; its own chain or reconcile pairs later
    done = {image.image_id: (image, s) for image, s in rows if image.status == ImageStatus.DONE and s is not None}
    choice = pairing.choose_pair([
        pairing.Candidate(i, image.seed, pairing.ranking_score(s.global_score, s.log_faithfulness))
        for i, (image, s) in done.items()
    ])
    if choice is None:
        log.warning("prompt %s/%s has fewer than two scored images; no pair", job_id, prompt_id)
        return None
    chosen, rejected = choice

    def panel(candidate: pairing.Candidate):
        image, s = done[candidate.image_id]
        with PILImage.open(image.path) as handle:
            picture = handle.convert("RGB")
        overlay = heatmaps.overlay(picture, s.patch_scores, s.grid)
        return picture, overlay, pairing.score_label(s.global_score, s.log_faithfulness)

    prompt_text = done[chosen.image_id][0].prompt
    target = artifacts.comparison_path(settings.artifact_root, job_id, prompt_id)
    artifacts.save_png(pairing.render_comparison(prompt_text, panel(chosen), panel(rejected)), target)
    values = {
        "job_id": job_id,
        "prompt_id": prompt_id,
        "prompt": prompt_text,
        "chosen_img": chosen.image_id,
        "rejected_img": rejected.image_id,
        "c_score": chosen.score,
        "r_score": rejected.score,
        "margin": chosen.score - rejected.score,
        "n_candidates": len(done),
        "comparison_path": str(target),
    }
    pair_id = f"{job_id}_{prompt_id}"
    with db.session_scope() as session:
        session.execute(
            insert(Pair).values(pair_id=pair_id, **values).on_conflict_do_update(index_elements=["pair_id"], set_=values)
        )
    return pair_id


@app.task(name="tipai.reconcile", **TASK_OPTIONS)
def reconcile(self) -> dict[str, int]:
    from tipai_queue.reconcile import reconcile_once

    return reconcile_once(get_settings()).as_dict()
