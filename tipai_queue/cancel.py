"""Cancelling a job: mark it, then take its not-yet-started messages off the broker.

The mark comes first and is what counts: every task checks `jobs.cancelled_at` before it starts (Stage.begin),
pairing and reconcile skip cancelled jobs, and a cancelled job is never enqueued again. Purging only saves the
workers from fetching messages they would drop. Messages a worker holds already (running, or waiting out a retry
countdown) cannot be taken back; they are skipped when they start. Celery's revoke is not used: it keeps every
revoked id in each worker's memory, 20 000 of them for a large job."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from sqlalchemy import func, select

from tipai_queue import db
from tipai_queue.models import Image, ImageStatus, Job
from tipai_queue.settings import Settings
from tipai_queue.workers_alive import QUEUES

SCAN_CHUNK = 1000
# kombu keeps messages sent with a priority in extra lists named QUEUE + "\x06\x16" + priority.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


@dataclass(frozen=True)
class Cancellation:
    job_id: str
    already: bool  # it had been cancelled before; nothing changed
    left_undone: int  # images not finished (neither done nor failed) when it was cancelled
    purged: int  # messages taken off the broker


class NoSuchJob(LookupError):
    pass


def message_job(raw: bytes) -> str | None:
    """The job a task message belongs to: its first argument is an image id (JOB_PROMPT_SEED) or a job id."""
    try:
        message = json.loads(raw)
        if message.get("content-type") != "application/json":
            return None
        args = json.loads(base64.b64decode(message["body"]))[0]
        return str(args[0]).split("_", 1)[0] if args else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def purge_messages(client: redis.Redis, job_id: str) -> int:
    """Remove the job's messages from every queue list. A worker may pop one between our read and our LREM;
    that one is skipped by the worker instead."""
    removed = 0
    for queue in QUEUES:
        for key in (queue + suffix for suffix in PRIORITY_SUFFIXES):
            start = 0
            while chunk := client.lrange(key, start, start + SCAN_CHUNK - 1):
                ours = [raw for raw in chunk if message_job(raw) == job_id]
                if ours:
                    with client.pipeline(transaction=False) as pipe:
                        for raw in ours:
                            pipe.lrem(key, 1, raw)
                        gone = sum(pipe.execute())
                    removed += gone
                start += len(chunk) - len(ours)
    return removed


def cancel_job(job_id: str, settings: Settings) -> Cancellation:
    with db.session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise NoSuchJob(job_id)
        already = job.cancelled_at is not None
        if not already:
            job.cancelled_at = datetime.now(UTC)
    with db.session_scope() as session:
        left_undone = session.scalar(
            select(func.count()).where(Image.job_id == job_id, Image.status.not_in(ImageStatus.TERMINAL))
        )
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=30)
    return Cancellation(job_id, already, left_undone, purge_messages(client, job_id))
