"""The liveness check under many threads at once, as the demo runs it for every user who presses Generate."""

from __future__ import annotations

import threading
import time

from tipai_queue.workers_alive import missing_queues

THREADS = 24  # more than Celery's connection pool (broker_pool_limit, 10)


def test_many_threads_checking_workers_at_once_all_get_an_answer(workers):
    answers: list[list[str]] = []
    threads = [threading.Thread(target=lambda: answers.append(missing_queues()), daemon=True) for _ in range(THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.1, started + 30 - time.monotonic()))
    assert len(answers) == THREADS, f"{THREADS - len(answers)} of {THREADS} checks still waiting after 30 s"
    assert answers == [[]] * THREADS  # both workers are up, and every thread saw both
