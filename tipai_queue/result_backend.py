"""A Redis result backend for a project in which nobody waits on a task result.

Postgres is the record of what each task did; Redis results exist only so chords can count their finished header
tasks, which the workers do among themselves. The stock backend still subscribes the *sending* process to the result
channel of every chord header task (one subscription per image: 20 000 for a large job, held for the life of the
demo process, and torn down noisily at exit). This backend never subscribes."""

from __future__ import annotations

from celery.backends.redis import RedisBackend


class SendOnlyRedisBackend(RedisBackend):
    def on_task_call(self, producer, task_id):
        pass

    def add_pending_result(self, result, weak=False, start_drainer=True):
        return result


def backend_spec(url: str) -> str:
    """Celery's `backend` argument: this class, at the configured Redis URL (other backends are used as given)."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return f"{__name__}:{SendOnlyRedisBackend.__name__}+{url}"
    return url
