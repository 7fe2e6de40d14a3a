"""A private stack for fault drills: its own Redis, Postgres, artifact folder and worker processes, on its own
ports, so killing and restarting them never disturbs the other tests. Everything talks to it through TIPAI_*
variables given to subprocesses; this process reads its Postgres through its own engine."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from tipai_queue import services
from tipai_queue.cancel import PRIORITY_SUFFIXES
from tipai_queue.models import Image, ImageStatus, Job, Pair, Prompt, Score
from tipai_queue.settings import PROJECT_ROOT, Settings
from tipai_queue.stack import Stack, private_env, stop_pids, worker_command

RESULTS = PROJECT_ROOT / "test-artifacts" / "faults.json"
WORKER_READY_TIMEOUT_S = 90


@dataclass
class FaultStack:
    state: Path
    redis_port: int
    pg_port: int
    env: dict[str, str]
    settings: Settings
    engine: object
    workers: Stack | None = None
    log_offsets: dict[str, int] = field(default_factory=dict)

    @property
    def artifact_root(self) -> Path:
        return Path(self.env["TIPAI_ARTIFACT_ROOT"])

    @property
    def broker(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, socket_timeout=10)

    def subprocess_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def tipai(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tipai_queue.cli", *args],
            capture_output=True, text=True, timeout=timeout, env=self.subprocess_env(), cwd=PROJECT_ROOT,
        )

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tipai_queue.cli", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.subprocess_env(), cwd=PROJECT_ROOT,
        )

    # ---------------------------------------------------------------------------------------------- workers

    def start_workers(self, gen: bool = True, cpu: bool = True, **env: str) -> None:
        """A generation worker (queue gpu, one process) and a CPU worker; `env` adds TIPAI_* settings to both."""
        self.workers = self.workers or Stack(self.settings)
        names = [name for name, wanted in (("gen0", gen), ("cpu", cpu)) if wanted]
        for name in names:
            log = self.state / "logs" / f"{name}.log"
            self.log_offsets[name] = log.stat().st_size if log.exists() else 0
            cmd = worker_command("gpu", "gen0@%h", 1) if name == "gen0" else worker_command("cpu", "cpu@%h", 1)
            self.workers.spawn(name, cmd, {**self.env, **env})
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while not all(" ready." in self.log(name) for name in names):
            dead = [n for n in names if self.workers.processes[n].poll() is not None]
            if dead or time.monotonic() > deadline:
                pytest.fail(f"workers did not come up (exited: {dead}): {[self.log(n)[-2000:] for n in names]}")
            time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.state / "logs" / f"{name}.log"
        if not path.exists():
            return ""
        with open(path, "rb") as handle:
            handle.seek(self.log_offsets.get(name, 0))
            return handle.read().decode(errors="replace")

    def received_twice(self, name: str = "gen0") -> bool:
        """Whether the worker has received some task message a second time (a redelivery)."""
        ids = re.findall(r"Task \S+\[([0-9a-f-]+)\] received", self.log(name))
        return len(ids) != len(set(ids))

    def queued_args(self, queue: str = "gpu") -> list[list]:
        """The arguments of every message waiting in a queue (including the lists kombu keeps per priority: a
        requeued message lands in one)."""
        return [
            json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
            for key in (queue + suffix for suffix in PRIORITY_SUFFIXES)
            for raw in self.broker.lrange(key, 0, -1)
        ]

    def worker(self, name: str = "gen0") -> subprocess.Popen:
        return self.workers.processes[name]

    def pool_child(self, name: str = "gen0") -> int:
        """The prefork child that runs the tasks of a one-process worker."""
        parent = self.worker(name).pid
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        assert len(children) == 1, f"expected one pool process under {name}, found {children}"
        return int(children[0])

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker and its pool at once: nothing gets to ack, reject or restore its message."""
        process = self.workers.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_workers(self) -> None:
        if self.workers is not None:
            stop_pids({n: p.pid for n, p in self.workers.processes.items()})
            for process in self.workers.processes.values():
                process.wait(timeout=10)
            self.workers.processes.clear()

    # ------------------------------------------------------------------------------------------- database

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def images(self, job_id: str) -> list[Image]:
        with self.session() as session:
            return list(session.scalars(select(Image).where(Image.job_id == job_id).order_by(Image.image_id)))

    def counts(self, job_id: str) -> dict[str, int]:
        with self.session() as session:
            return {
                "jobs": session.scalar(select(func.count()).where(Job.job_id == job_id)),
                "prompts": session.scalar(select(func.count()).where(Prompt.job_id == job_id)),
                "images": session.scalar(select(func.count()).where(Image.job_id == job_id)),
                "scores": session.scalar(
                    select(func.count()).select_from(Score).join(Image, Image.image_id == Score.image_id)
                    .where(Image.job_id == job_id)
                ),
                "pairs": session.scalar(select(func.count()).where(Pair.job_id == job_id)),
            }

    def wait_until(self, condition, timeout: float, what: str, poll: float = 0.1) -> float:
        """Seconds until `condition()` held; fails the test (with the worker logs) if it never does."""
        started = time.monotonic()
        while True:
            try:
                if condition():
                    return time.monotonic() - started
            except Exception:  # the database or broker is down on purpose in some drills
                pass
            if time.monotonic() - started > timeout:
                logs = {n: self.log(n)[-3000:] for n in ("gen0", "cpu")}
                pytest.fail(f"{what}: not reached within {timeout:.0f} s; worker logs: {logs}")
            time.sleep(poll)

    def finished(self, job_id: str, n_prompts: int) -> bool:
        images = self.images(job_id)
        return all(i.status == ImageStatus.DONE for i in images) and self.counts(job_id)["pairs"] == n_prompts

    def assert_complete(self, job_id: str, prompt_ids: list[str], seeds: list[int]) -> list[Image]:
        """Exactly one done row, score and file per requested image and one pair per prompt; nothing else."""
        n = len(prompt_ids) * len(seeds)
        assert self.counts(job_id) == {"jobs": 1, "prompts": len(prompt_ids), "images": n, "scores": n,
                                       "pairs": len(prompt_ids)}
        images = self.images(job_id)
        assert [(i.status, i.error) for i in images] == [(ImageStatus.DONE, None)] * n
        assert sorted(i.image_id for i in images) == sorted(f"{job_id}_{p}_{s}" for p in prompt_ids for s in seeds)
        folder = self.artifact_root / job_id
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        assert files == sorted(
            [f"images/{p}_{s}.png" for p in prompt_ids for s in seeds]
            + [f"heatmaps/{job_id}_{p}_{s}_heatmap.png" for p in prompt_ids for s in seeds]
            + [f"pairs/{p}_comparison.png" for p in prompt_ids]
        )  # no temporary or duplicate files
        return images

    def write_batch(self, name: str, prompts: list) -> Path:
        path = self.state / f"{name}.json"
        path.write_text(json.dumps(prompts))
        return path

    def submit(self, batch: Path, *args: str) -> str:
        """A new job each time (--force): drills reuse prompts, and a reused job would enqueue nothing."""
        result = self.tipai("submit", str(batch), "--force", *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return next(line.split("=", 1)[1] for line in result.stdout.splitlines() if line.startswith("job_id="))

    def reset(self) -> None:
        """Between drills: no workers, an empty broker (queues, unacked messages, chord counters)."""
        self.stop_workers()
        self.broker.flushall()


URL_VARIABLES = ("TIPAI_BROKER_URL", "TIPAI_DATABASE_URL")


@pytest.fixture(scope="session")
def fault_stack():
    state = Path(tempfile.mkdtemp(prefix="tipai-faults-", dir="/var/tmp"))
    state.chmod(0o755)  # the postgres system user must reach its data folder when tests run as root
    # The session stack's ports are only reserved by name until a test starts its servers: a drill's server on
    # one of them would be taken for the session's, and stopping it would leave the session's workers with none.
    session_ports = {urlsplit(os.environ[name]).port for name in URL_VARIABLES}
    while True:
        # Reconcile only when a drill runs it, so a drill can tell whether the queue recovered on its own.
        env = {**private_env(state), "TIPAI_RECONCILE_EVERY_S": "3600"}
        redis_port, pg_port = (urlsplit(env[name]).port for name in URL_VARIABLES)
        if not {redis_port, pg_port} & session_ports:
            break
    services.start_redis(state, redis_port)
    services.start_postgres(state, pg_port)
    settings = Settings(**{k.removeprefix("TIPAI_").lower(): v for k, v in env.items()})
    stack = FaultStack(state, redis_port, pg_port, env, settings, create_engine(settings.database_url, pool_pre_ping=True))
    migrated = stack.tipai("migrate")
    assert migrated.returncode == 0, migrated.stderr
    yield stack
    stack.stop_workers()
    stack.engine.dispose()
    services.stop_redis(state)
    services.stop_postgres(state)
    shutil.rmtree(services.postgres_base_dir(state), ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def faults(fault_stack):
    fault_stack.reset()
    yield fault_stack
    fault_stack.reset()


@pytest.fixture(scope="session")
def recovery_times():
    """Each drill records what it measured; printed and written to test-artifacts/faults.json at the end."""
    measured: dict[str, dict[str, float | str]] = {}
    yield measured
    if measured:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(measured, indent=2) + "\n")
        print("\nfault drills, measured (s):")
        for drill, values in measured.items():
            print(f"  {drill}: " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()))


def wait_for_running(stack: FaultStack, job_id: str, status: str, timeout: float = 60) -> Image:
    """The first image of the job to reach `status`; the drill strikes while it is there."""
    found: list[Image] = []

    def running() -> bool:
        found[:] = [i for i in stack.images(job_id) if i.status == status]
        return bool(found)

    stack.wait_until(running, timeout, f"an image {status}", poll=0.05)
    return found[0]

