"""How many messages wait in each queue. With task priorities, Redis keeps one list per queue and priority step."""

from __future__ import annotations

from tipai_queue.celery_app import app

QUEUES = ("gpu", "cpu")


def queue_lengths() -> dict[str, int]:
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        client = channel.client
        return {
            queue: sum(client.llen(channel._q_for_pri(queue, step)) for step in channel.priority_steps)
            for queue in QUEUES
        }
