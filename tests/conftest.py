"""Test services are real: a Redis and a Postgres started from this machine's binaries in a throw-away state
folder on free ports, and real `celery worker` processes. The TIPAI_* variables are set before any test module
imports the settings, so the code under test and its subprocesses all talk to these servers."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tipai_queue import services
from tipai_queue.stack import private_env

STATE = Path(tempfile.mkdtemp(prefix="tipai-test-", dir="/var/tmp"))
STATE.chmod(0o755)  # the postgres system user must reach its data folder when tests run as root
# Set on import, not in pytest_configure: pytest imports the conftest of every folder named on its command line
# (`pytest tests/faults/test_cancel.py`) before configuring, and an import there that reads the settings would
# cache the defaults, the user's own stack in .tipai/, instead of these.
os.environ.update(
    private_env(STATE),
    TIPAI_PRESET="tiny",
    TIPAI_DEVICE="cpu",
    TIPAI_MODEL_CACHE_DIR=str(Path(tempfile.gettempdir()) / "tipai-test-models"),
    # The reconcile tests run it by hand; a periodic run in between would do their work first.
    TIPAI_RECONCILE_EVERY_S="3600",
    HF_HUB_OFFLINE="1",
)


def pytest_unconfigure(config: pytest.Config) -> None:
    services.stop_redis(STATE)
    services.stop_postgres(STATE)
    shutil.rmtree(STATE, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_services():
    """Redis and Postgres up, schema migrated."""
    from tipai_queue.settings import get_settings
    from tipai_queue.stack import ensure_services, migrate

    ensure_services(get_settings())
    migrate()
    return get_settings()


@pytest.fixture(scope="session")
def workers(stack_services):
    """One generation worker (queue gpu, on the CPU) and one CPU worker with the reconcile beat."""
    from tipai_queue.stack import Stack
    from tipai_queue.workers_alive import missing_queues

    stack = Stack(stack_services)
    stack.start_workers()
    deadline = time.monotonic() + 90
    while missing_queues(timeout_s=1.0):
        dead = {n: p.returncode for n, p in stack.processes.items() if p.poll() is not None}
        if dead or time.monotonic() > deadline:
            logs = stack_services.state_dir / "logs"
            tails = {p.name: p.read_text()[-2000:] for p in logs.glob("*.log")}
            stack.stop()
            pytest.fail(f"workers did not come up (exited: {dead}); logs: {tails}")
        time.sleep(0.5)
    yield stack
    stack.stop()
