"""Submitting a validated batch: rows first (idempotently), then one chord per prompt, exactly once per job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

import redis
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from tipai_queue import canvas, db
from tipai_queue.batch import Batch
from tipai_queue.models import Image, Job, Prompt
from tipai_queue.settings import Settings

ROWS_PER_INSERT = 1000


def batched(rows, size: int):
    """itertools.batched arrives in Python 3.12; we support 3.11."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


class ServiceUnavailable(RuntimeError):
    """The broker or the database does not answer; nothing was written or enqueued."""


@dataclass(frozen=True)
class Submission:
    job_id: str
    created: bool  # False: the same batch was submitted before and its job is reused
    enqueued: bool  # this call sent the job's tasks
    n_prompts: int
    n_images: int


def image_id(job_id: str, prompt_id: str, seed: int) -> str:
    return f"{job_id}_{prompt_id}_{seed}"


SERVICES_HINT = "Start the services with `tipai up` or set TIPAI_BROKER_URL / TIPAI_DATABASE_URL."


def not_answering(what: str, url: str, exc: BaseException) -> str:
    """One line naming the server (its URL redacted) and the driver's reason, whose own message spans lines."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return f"{what} {db.redact(url)} does not answer ({reason})"


def check_services(settings: Settings) -> None:
    problems = []
    try:
        redis.Redis.from_url(settings.broker_url, socket_connect_timeout=3, socket_timeout=3).ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        problems.append(not_answering("broker", settings.broker_url, exc))
    try:
        db.ping()
    except Exception as exc:  # any driver error here means the same thing to the user
        problems.append(not_answering("database", settings.database_url, exc))
    if problems:
        raise ServiceUnavailable("; ".join(problems) + ". " + SERVICES_HINT)


def write_rows(batch: Batch, job_id: str) -> bool:
    """Insert the job, its prompts and its images. Returns False when the job already existed (nothing written).
    Two submitters racing on the same batch serialise on the job's primary key: one writes, the other sees it."""
    opts = batch.options
    with db.session_scope() as session:
        created = session.execute(
            insert(Job)
            .values(
                job_id=job_id,
                source=batch.source,
                preset=opts.preset,
                generator=opts.generator,
                scorer=opts.scorer,
                width=opts.width,
                height=opts.height,
                steps=opts.steps,
                guidance=opts.guidance,
                grid=opts.grid,
                method=opts.method,
                seeds=list(opts.seeds),
                n_prompts=len(batch.prompts),
                n_images=batch.n_images,
            )
            .on_conflict_do_nothing(index_elements=["job_id"])
            .returning(Job.job_id)
        ).scalar_one_or_none()
        if created is None:
            return False
        prompt_rows = [
            {"job_id": job_id, "prompt_id": p.prompt_id, "position": i, "prompt": p.prompt, "category": p.category}
            for i, p in enumerate(batch.prompts)
        ]
        for chunk in batched(prompt_rows, ROWS_PER_INSERT):
            session.execute(insert(Prompt).values(list(chunk)).on_conflict_do_nothing())
        image_rows = (
            {
                "image_id": image_id(job_id, p.prompt_id, seed),
                "job_id": job_id,
                "prompt_id": p.prompt_id,
                "prompt": p.prompt,
                "seed": seed,
                "status": "queued",
                "attempts": 0,
            }
            for p in batch.prompts
            for seed in opts.seeds
        )
        for chunk in batched(image_rows, ROWS_PER_INSERT):
            session.execute(insert(Image).values(list(chunk)).on_conflict_do_nothing())
    return True


def ensure_enqueued(job_id: str) -> bool:
    """Send the job's chords unless they were sent already. The job row is locked while sending, so concurrent
    submitters (or a resubmission after a crash between writing and sending) enqueue a job exactly once."""
    with db.session_scope() as session:
        job = session.execute(select(Job).where(Job.job_id == job_id).with_for_update()).scalar_one()
        if job.enqueued_at is not None or job.cancelled_at is not None:
            return False
        rows = session.execute(
            select(Image.prompt_id, Image.image_id)
            .join(Prompt, (Prompt.job_id == Image.job_id) & (Prompt.prompt_id == Image.prompt_id))
            .where(Image.job_id == job_id)
            .order_by(Prompt.position, Image.seed)
        ).all()
        by_prompt: dict[str, list[str]] = {}
        for prompt_id, img in rows:
            by_prompt.setdefault(prompt_id, []).append(img)
        for prompt_id, image_ids in by_prompt.items():
            canvas.prompt_chord(job_id, prompt_id, image_ids).apply_async()
        job.enqueued_at = datetime.now(UTC)
    return True


def submit(batch: Batch, settings: Settings, force: bool = False) -> Submission:
    check_services(settings)
    job_id = batch.job_id(nonce=uuid.uuid4().hex if force else "")
    created = write_rows(batch, job_id)
    enqueued = ensure_enqueued(job_id)
    return Submission(job_id, created, enqueued, len(batch.prompts), batch.n_images)
