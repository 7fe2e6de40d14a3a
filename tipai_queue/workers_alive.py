"""Which queues have a live consumer, asked of the workers themselves over the broker."""

from __future__ import annotations

from tipai_queue.celery_app import app
from tipai_queue.queues import QUEUES


def active_queues(timeout_s: float = 1.0) -> set[str]:
    # A connection of its own, not one from Celery's pool: the broadcast also takes its producer from that pool
    # (broker_pool_limit, 10), so ten threads asking at once (ten demo users) each held one and waited forever.
    with app.connection_for_read() as connection:
        replies = app.control.inspect(timeout=timeout_s, connection=connection).active_queues() or {}
    return {queue["name"] for queues in replies.values() for queue in queues}


def missing_queues(timeout_s: float = 1.0) -> list[str]:
    alive = active_queues(timeout_s)
    return [q for q in QUEUES if q not in alive]
