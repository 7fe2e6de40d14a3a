"""Each queue gets only its own messages, on a real Redis: a task meant for the GPU workers is never also copied to
the CPU workers' queue (or the other way round), however it is published."""

from __future__ import annotations

import pytest
from kombu import Connection

from tipai_queue.celery_app import app


@pytest.fixture
def connection(stack_services):
    # A database of its own on the test Redis: the session's workers consume gpu and cpu on the broker's.
    with Connection(stack_services.broker_url.rsplit("/", 1)[0] + "/7") as conn:
        for queue in app.amqp.queues.values():
            queue(conn.default_channel).declare()
        yield conn
        for queue in app.amqp.queues.values():
            queue(conn.default_channel).delete()


def delivered(conn: Connection) -> dict[str, list[str]]:
    got: dict[str, list[str]] = {}
    for name, queue in app.amqp.queues.items():
        bound = queue(conn.default_channel)
        got[name] = []
        while (message := bound.get(no_ack=True)) is not None:
            got[name].append(message.headers.get("task") or message.payload["to"])
    return got


def test_a_message_sent_to_a_queues_exchange_and_key_reaches_that_queue_alone(connection):
    producer = app.amqp.Producer(connection.default_channel)
    for queue in app.amqp.queues.values():
        producer.publish({"to": queue.name}, exchange=queue.exchange, routing_key=queue.routing_key)
    assert delivered(connection) == {"gpu": ["gpu"], "cpu": ["cpu"]}


def test_tasks_are_routed_by_name_to_one_queue_each(connection):
    producer = app.amqp.Producer(connection.default_channel)
    for name in ("tipai.generate", "tipai.score", "tipai.heatmap", "tipai.pair"):
        app.send_task(name, args=["image-id"], producer=producer, ignore_result=True)
    got = delivered(connection)
    assert sorted(got["gpu"]) == ["tipai.generate", "tipai.score"]
    assert sorted(got["cpu"]) == ["tipai.heatmap", "tipai.pair"]
