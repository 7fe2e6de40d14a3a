"""Which queues have a live consumer, asked of the workers themselves over the broker."""

from __future__ import annotations

from tipai_queue.celery_app import app
from tipai_queue.queues import QUEUES


def active_queues(timeout_s: float = 1.0) -> set[str]:
    replies = app.control.inspect(timeout=timeout_s).active_queues() or {}
    return {queue["name"] for queues in replies.values() for queue in queues}


def missing_queues(timeout_s: float = 1.0) -> list[str]:
    alive = active_queues(timeout_s)
    return [q for q in QUEUES if q not in alive]
