"""The Celery app. Every setting that differs from Celery's default says why."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from tipai_queue.result_backend import backend_spec
from tipai_queue.settings import get_settings

settings = get_settings()

app = Celery(
    "tipai", broker=settings.broker_url, backend=backend_spec(settings.result_backend), include=["workers.tasks"]
)

app.conf.update(
    # JSON only: a pickle on the broker is remote code execution for whoever can write to Redis, and only ids
    # and paths travel anyway.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Ack after the task body finishes, and give the message back if the worker process dies mid-task: a killed
    # GPU worker must not lose an image. Tasks are idempotent upserts, so a redelivery is harmless.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # One message reserved per process: a generate task holds a GPU for seconds to minutes, and a prefetched
    # message would wait behind it instead of going to an idle worker.
    worker_prefetch_multiplier=1,
    # Redis redelivers an unacked message after this long. It must exceed the longest task, or a slow but
    # healthy generate would run twice.
    broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
    result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
    # Flower needs the workers' task events; STARTED lets Flower tell running from queued. No "sent" events from
    # the submitter: one extra Redis publish per task was a third of the time to submit a 20 000-image job.
    worker_send_task_events=True,
    task_track_started=True,
    # Model work and rendering live on different machines: route by task name. Each queue is bound by its own
    # name: a bare Queue("gpu") takes the default exchange and routing key, both "cpu", so anything published to
    # that exchange and key would be copied into both queues and run twice.
    task_queues=[Queue(name, Exchange("tipai", type="direct"), routing_key=name) for name in ("gpu", "cpu")],
    task_default_queue="cpu",
    # Within the gpu queue, a ready score goes before the next generate (Redis: lower number = served first):
    # otherwise every generate of a batch runs before the first score, and the CPU workers idle until the end.
    task_routes={
        "tipai.generate": {"queue": "gpu", "priority": 6},
        "tipai.score": {"queue": "gpu", "priority": 0},
        "tipai.heatmap": {"queue": "cpu"},
        "tipai.pair": {"queue": "cpu"},
        "tipai.reconcile": {"queue": "cpu"},
    },
    # Results only feed chords and progress; Postgres is the record. Don't let them pile up in Redis.
    result_expires=24 * 3600,
    # Keep retrying the broker when a worker starts before Redis (compose, `tipai up`) or Redis restarts.
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    # With acks_late, a task still running when the broker connection drops would be redelivered and run twice
    # in parallel; cancel it instead, the redelivered copy does the work.
    worker_cancel_long_running_tasks_on_connection_loss=True,
    # Pick up tasks lost by a dropped chord callback or a dead worker (see workers/tasks.py: reconcile).
    beat_schedule={
        "reconcile": {"task": "tipai.reconcile", "schedule": float(settings.reconcile_every_s)},
    },
    worker_hijack_root_logger=False,
)
