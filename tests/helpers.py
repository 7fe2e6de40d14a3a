"""Shared by the integration tests: run the real CLI, count rows, wait for the queue."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from sqlalchemy import func, select


def tipai(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tipai_queue.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def job_id_from(output: str) -> str:
    return next(line.split("=", 1)[1] for line in output.splitlines() if line.startswith("job_id="))


def counts(job_id: str | None = None) -> dict[str, int]:
    from tipai_queue import db
    from tipai_queue.models import Image, Job, Pair, Prompt, Score

    def count(session, model, column):
        query = select(func.count()).select_from(model)
        return session.scalar(query if job_id is None else query.where(column == job_id))

    with db.session_scope() as session:
        scores = select(func.count()).select_from(Score).join(Image, Image.image_id == Score.image_id)
        return {
            "jobs": count(session, Job, Job.job_id),
            "prompts": count(session, Prompt, Prompt.job_id),
            "images": count(session, Image, Image.job_id),
            "scores": session.scalar(scores if job_id is None else scores.where(Image.job_id == job_id)),
            "pairs": count(session, Pair, Pair.job_id),
        }


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.5)
