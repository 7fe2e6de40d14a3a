"""Running the whole stack on one machine without Docker: local Redis and Postgres (when the configured URLs
point at this machine), migrations, one generation worker per GPU (one on the CPU when there is none), a CPU
worker with the reconcile beat, and Flower. Every process logs to STATE/logs/NAME.log."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from alembic import command
from alembic.config import Config

from tipai_queue import services
from tipai_queue.settings import PROJECT_ROOT, Settings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
STOP_TIMEOUT_S = 30


def migrate() -> None:
    command.upgrade(Config(str(PROJECT_ROOT / "alembic.ini")), "head")


def _local_port(url: str, default: int) -> int | None:
    parts = urlsplit(url.replace("postgresql+psycopg", "postgresql"))
    return (parts.port or default) if parts.hostname in LOCAL_HOSTS else None


def private_env(state_dir: Path) -> dict[str, str]:
    """TIPAI_* variables for a stack of its own in `state_dir` (free ports, own artifact folder): for tests and
    benchmarks, which must neither touch nor be disturbed by a stack the user has running."""
    redis_port, pg_port = services.free_port(), services.free_port()
    while pg_port == redis_port:  # each port was closed again at once, so the kernel may hand out the same one
        pg_port = services.free_port()
    return {
        "TIPAI_STATE_DIR": str(state_dir),
        "TIPAI_ARTIFACT_ROOT": str(state_dir / "artifacts"),
        "TIPAI_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "TIPAI_RESULT_BACKEND": f"redis://127.0.0.1:{redis_port}/1",
        "TIPAI_DATABASE_URL": f"postgresql+psycopg://tipai@127.0.0.1:{pg_port}/tipai",
    }


def ensure_services(settings: Settings) -> list[str]:
    """Start local Redis/Postgres for URLs on this machine that do not answer yet. Returns what was started."""
    started = []
    redis_port = _local_port(settings.broker_url, 6379)
    if redis_port is not None and not services.redis_answers(redis_port):
        services.start_redis(settings.state_dir, redis_port)
        started.append("redis")
    pg_port = _local_port(settings.database_url, 5432)
    if pg_port is not None and not services.port_open(pg_port):
        parts = urlsplit(settings.database_url)
        services.start_postgres(settings.state_dir, pg_port, parts.username or "tipai", parts.path.lstrip("/") or "tipai")
        started.append("postgres")
    return started


def stop_services(settings: Settings, which: list[str]) -> None:
    if "redis" in which:
        services.stop_redis(settings.state_dir)
    if "postgres" in which:
        services.stop_postgres(settings.state_dir)


def gpu_count() -> int:
    """Counted with nvidia-smi, not torch: the parent must never initialise CUDA before workers fork."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def worker_command(queue: str, name: str, concurrency: int, beat_schedule: Path | None = None) -> list[str]:
    # prefork: the model loads lazily in the child, so CUDA is never initialised in a forking parent, and a
    # child killed mid-task is noticed at once (task_reject_on_worker_lost requeues its message).
    cmd = [
        sys.executable, "-m", "celery", "-A", "tipai_queue.celery_app", "worker",
        "-Q", queue, "-n", name, "-P", "prefork", "-c", str(concurrency), "--loglevel", "INFO", "-E",
    ]
    if beat_schedule is not None:
        cmd += ["-B", "--schedule", str(beat_schedule)]
    return cmd


def flower_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "tipai_queue.celery_app", "flower",
        f"--address={settings.flower_host}", f"--port={settings.flower_port}",
    ]


def flower_env(user: str, password: str) -> dict[str, str]:
    """Flower reads its options from FLOWER_* variables too: there the password stays out of `ps`, which any user
    of the machine can read, unlike another user's environment."""
    return {"FLOWER_BASIC_AUTH": f"{user}:{password}"}


def flower_credentials(settings: Settings) -> tuple[str, str]:
    """From TIPAI_FLOWER_USER/PASSWORD; locally, a random password kept in STATE/flower-password instead of a
    default one."""
    if settings.flower_user and settings.flower_password:
        return settings.flower_user, settings.flower_password.get_secret_value()
    stored = settings.state_dir / "flower-password"
    if not stored.exists():
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(secrets.token_urlsafe(12))
        stored.chmod(0o600)
    return settings.flower_user or "tipai", stored.read_text().strip()


def record_path(settings: Settings) -> Path:
    return settings.state_dir / "stack.json"


def recorded_processes(settings: Settings) -> dict[str, int]:
    """The processes an earlier `tipai up` (detached or in another terminal) recorded and that still run."""
    record = record_path(settings)
    if not record.exists():
        return {}
    pids = json.loads(record.read_text()).get("pids", {})
    return {name: pid for name, pid in pids.items() if _alive(pid) and _leads_its_group(pid)}


def _leads_its_group(pid: int) -> bool:
    # Each process is started in a session of its own; a recycled pid almost never leads its group.
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


@dataclass
class Stack:
    """Processes this command started, beside those an earlier `tipai up` left running (``adopted``: kept in the
    record so that `tipai down` still finds them, never stopped by `stop`)."""

    settings: Settings
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    services_started: list[str] = field(default_factory=list)
    adopted: dict[str, int] = field(default_factory=dict)

    @property
    def workers(self) -> list[str]:
        return [name for name in self.processes if name.startswith(("gpu", "gen", "cpu"))]

    @property
    def record(self) -> Path:
        return record_path(self.settings)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        logs = self.settings.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )
        self.processes[name] = proc
        self.save()
        return proc

    def start_workers(self) -> None:
        """One generation worker per GPU (one on the CPU without) and the CPU worker, but for those still running."""
        gpus = gpu_count()
        for index in range(max(gpus, 1)):
            name = f"gpu{index}" if gpus else "gen0"
            env = {"CUDA_VISIBLE_DEVICES": str(index)} if gpus else {}
            if name not in self.adopted:
                self.spawn(name, worker_command("gpu", f"{name}@%h", 1), env)
        if "cpu" not in self.adopted:
            beat_schedule = self.settings.state_dir / "beat-schedule"
            self.spawn("cpu", worker_command("cpu", "cpu@%h", self.settings.worker_concurrency_cpu, beat_schedule))

    def start_flower(self) -> tuple[str, str]:
        """Flower, unless an earlier `tipai up` runs one (a second would only fail to bind the port)."""
        user, password = flower_credentials(self.settings)
        if "flower" not in self.adopted:
            self.spawn("flower", flower_command(self.settings), flower_env(user, password))
        return user, password

    def start_demo(self) -> str:
        """The demo page, in its own process: it reads rows and files and never loads a model. Returns its URL."""
        if "demo" not in self.adopted:
            self.spawn("demo", [sys.executable, "-m", "frontend"])
        return f"http://{self.settings.demo_host}:{self.settings.demo_port}"

    def save(self) -> None:
        self.record.parent.mkdir(parents=True, exist_ok=True)
        pids = self.adopted | {n: p.pid for n, p in self.processes.items()}
        self.record.write_text(json.dumps({"pids": pids, "services": self.services_started}))

    def stop(self) -> None:
        stop_pids({n: p.pid for n, p in self.processes.items()})
        for proc in self.processes.values():
            proc.wait(timeout=5)
        stop_services(self.settings, self.services_started)
        self.processes.clear()
        if self.adopted:
            self.save()
        else:
            self.record.unlink(missing_ok=True)


def stop_pids(pids: dict[str, int]) -> None:
    """SIGTERM each process group (a Celery warm shutdown finishes or returns its task), SIGKILL stragglers."""
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for pid in pids.values():
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def down(settings: Settings) -> list[str]:
    """Stop what a detached `tipai up` recorded and still runs (a recycled pid is never signalled), then the local
    servers in the state folder. The names of those that were running."""
    running = recorded_processes(settings)
    stop_pids(running)
    record_path(settings).unlink(missing_ok=True)
    servers = {"redis": services.stop_redis(settings.state_dir), "postgres": services.stop_postgres(settings.state_dir)}
    return [*running, *(name for name, was_running in servers.items() if was_running)]


def start(settings: Settings, flower: bool = True, demo: bool = False) -> tuple[Stack, tuple[str, str] | None]:
    stack = Stack(settings, adopted=recorded_processes(settings))
    stack.services_started = ensure_services(settings)
    migrate()
    from tipai_queue.workers_alive import missing_queues

    # A stack started earlier (`tipai up` in another terminal) already serves the queues: don't double it.
    if stack.services_started or missing_queues():
        stack.start_workers()
    credentials = stack.start_flower() if flower else None
    if demo:
        stack.start_demo()
    return stack, credentials
