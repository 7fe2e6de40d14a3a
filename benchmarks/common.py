"""A private stack for a benchmark run: its own Redis, Postgres, artifact folder and workers on free ports, so a
measurement never touches (or is disturbed by) a stack the user has running. Call `isolate()` before anything
imports the project's settings."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def isolate(preset: str = "tiny") -> Path:
    from tipai_queue.stack import private_env

    state = Path(tempfile.mkdtemp(prefix="tipai-bench-", dir="/var/tmp"))
    state.chmod(0o755)  # the postgres system user must reach its data folder when run as root
    os.environ.update(private_env(state), TIPAI_PRESET=preset, HF_HUB_OFFLINE="1")
    os.environ.setdefault("TIPAI_MODEL_CACHE_DIR", str(Path(tempfile.gettempdir()) / "tipai-test-models"))
    return state


@contextmanager
def running_stack():
    """Services, schema and one generation + one CPU worker, waited for until both queues have a consumer."""
    from tipai_queue import services
    from tipai_queue.settings import get_settings
    from tipai_queue.stack import Stack, ensure_services, migrate
    from tipai_queue.workers_alive import missing_queues

    settings = get_settings()
    ensure_services(settings)
    migrate()
    stack = Stack(settings)
    stack.start_workers()
    try:
        deadline = time.monotonic() + 120
        while missing_queues():
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start; see {settings.state_dir / 'logs'}")
            time.sleep(0.5)
        yield settings
    finally:
        stack.stop()
        services.stop_redis(settings.state_dir)
        services.stop_postgres(settings.state_dir)
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def wait_finished(job_id: str, timeout_s: float = 1800) -> None:
    from tipai_queue.progress import job_progress

    deadline = time.monotonic() + timeout_s
    while not job_progress(job_id).finished:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not finish in {timeout_s} s")
        time.sleep(0.1)


def write_json(path: str | None, payload: dict) -> None:
    print(json.dumps(payload, indent=2))
    if path:
        Path(path).write_text(json.dumps(payload, indent=2))
