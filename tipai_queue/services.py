"""Start and stop the local Redis and Postgres servers that ``tipai up`` and the tests use.

All service data lives in one project-local *state folder*::

    STATE/redis/            redis data (AOF in appendonlydir/), redis.pid, redis.log
    STATE/postgres/data     the Postgres cluster
    STATE/postgres/postgres.log
    STATE/postgres/socket   the unix-socket directory (never /var/run)

Postgres refuses to run as root. When this process is root, the cluster files are owned by the
``postgres`` system user and every ``initdb`` / ``pg_ctl`` runs via ``runuser -u postgres --``. If
that user cannot traverse to the state folder (e.g. pytest's ``/tmp/pytest-of-root`` is mode 700),
the Postgres part lives under ``/var/tmp/tipai-pg-<sha1(state_dir)[:10]>`` instead; the chosen
location is recorded in ``STATE/postgres-location.txt`` so stop/restart find it again.

Everything here is a plain function of its arguments (no module state); every wait is bounded; every
failure is a ``RuntimeError`` naming the log file and quoting its last lines.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REDIS_START_TIMEOUT_S = 15.0
REDIS_STOP_TIMEOUT_S = 15.0
PG_START_TIMEOUT_S = 30
PG_STOP_TIMEOUT_S = 30
INITDB_TIMEOUT_S = 120
CMD_TIMEOUT_S = 20
PG_SYSTEM_USER = "postgres"
_PG_LOCATION_FILE = "postgres-location.txt"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"


@dataclass
class ServerHandle:
    name: str
    url: str
    pid: int
    log: Path


# ----------------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(could not read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _fail(what: str, log_file: Path, extra: str = "") -> RuntimeError:
    msg = f"{what}. Log: {log_file}"
    if extra:
        msg += f"\n{extra.strip()}"
    msg += f"\n--- last lines of {log_file} ---\n{_tail(log_file)}"
    return RuntimeError(msg)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists" for kill(0); treat it as dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------- redis


def _redis_dir(state_dir: Path) -> Path:
    return Path(state_dir).resolve() / "redis"


def redis_answers(port: int, timeout: float = 1.0) -> bool:
    """True if something on 127.0.0.1:port answers a RESP PING with +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_server_pid(port: int) -> int | None:
    """The process_id the redis on ``port`` reports (INFO server), or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
            s.settimeout(2.0)
            s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            buf = b""
            deadline = time.monotonic() + 2.0
            while b"process_id:" not in buf or not re.search(rb"process_id:\d+\r\n", buf):
                if time.monotonic() > deadline:
                    return None
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError:
        return None
    m = re.search(rb"process_id:(\d+)", buf)
    return int(m.group(1)) if m else None


def _find_redis_server() -> str:
    exe = shutil.which("redis-server")
    if not exe:
        raise RuntimeError(
            "redis-server not found on PATH. Install it, e.g. `apt-get install redis-server` "
            "(or put a redis-server binary on PATH)."
        )
    return exe


def start_redis(state_dir: Path, port: int) -> ServerHandle:
    """Start (or reuse) a redis on 127.0.0.1:port with its AOF data in ``state_dir/redis``."""
    rdir = _redis_dir(state_dir)
    rdir.mkdir(parents=True, exist_ok=True)
    pidfile, logfile = rdir / "redis.pid", rdir / "redis.log"
    url = f"redis://127.0.0.1:{port}"

    pid = _read_pid(pidfile)
    if pid is not None and _pid_alive(pid) and "redis" in _cmdline(pid):
        if redis_answers(port) and _redis_server_pid(port) == pid:
            return ServerHandle("redis", url, pid, logfile)  # already ours: idempotent
        raise _fail(
            f"A redis for state dir {rdir} is already running (pid {pid}) but not on port {port}; "
            "stop it first (stop_redis / `tipai down`)",
            logfile,
        )
    if pid is not None:
        pidfile.unlink(missing_ok=True)  # stale
    if port_open(port):
        raise _fail(f"Port 127.0.0.1:{port} is already in use by another process; cannot start redis", logfile)

    exe = _find_redis_server()
    cmd = [
        exe,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(rdir),
        # AOF so a restart (or crash) does not lose queued messages; RDB snapshots off.
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "yes",
        "--pidfile", str(pidfile),
        "--logfile", str(logfile),
    ]
    try:
        proc = subprocess.run(cmd, cwd=rdir, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=CMD_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise _fail(f"redis-server did not daemonize within {CMD_TIMEOUT_S}s", logfile) from e
    if proc.returncode != 0:
        raise _fail(f"redis-server exited with status {proc.returncode}", logfile, proc.stdout + proc.stderr)

    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while time.monotonic() < deadline:
        pid = _read_pid(pidfile)
        if pid is not None and redis_answers(port, timeout=0.5):
            return ServerHandle("redis", url, pid, logfile)
        if pid is not None and not _pid_alive(pid):
            raise _fail(f"redis-server (pid {pid}) exited during startup on port {port}", logfile)
        time.sleep(0.05)
    raise _fail(f"redis did not answer PING on 127.0.0.1:{port} within {REDIS_START_TIMEOUT_S:.0f}s", logfile)


def stop_redis(state_dir: Path) -> bool:
    """Stop the redis whose pidfile is in ``state_dir/redis`` (SIGTERM: flushes the AOF). Whether one was running."""
    rdir = _redis_dir(state_dir)
    pidfile, logfile = rdir / "redis.pid", rdir / "redis.log"
    pid = _read_pid(pidfile)
    if pid is None or not _pid_alive(pid) or "redis" not in _cmdline(pid):
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + REDIS_STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            pidfile.unlink(missing_ok=True)
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    pidfile.unlink(missing_ok=True)
    raise _fail(f"redis (pid {pid}) did not shut down within {REDIS_STOP_TIMEOUT_S:.0f}s; killed it", logfile)


def restart_redis(state_dir: Path, port: int) -> ServerHandle:
    stop_redis(state_dir)
    return start_redis(state_dir, port)


# ---------------------------------------------------------------------------------- postgres


@dataclass(frozen=True)
class _PgLayout:
    base: Path
    data: Path
    log: Path
    socket_dir: Path


def _find_pg_bindir() -> Path:
    """Directory holding both initdb and pg_ctl: PATH first, then newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        d = Path(os.path.realpath(on_path)).parent
        if (d / "initdb").exists():
            return d
        if shutil.which("initdb"):
            # Different dirs but both on PATH: use PATH's pg_ctl's dir only if it has initdb; else PATH.
            return Path(os.path.realpath(shutil.which("initdb"))).parent

    def ver(p: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/bin", p)
        return tuple(int(x) for x in m.group(1).split(".") if x) if m else (0,)

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=ver, reverse=True):
        if os.access(Path(d) / "initdb", os.X_OK) and os.access(Path(d) / "pg_ctl", os.X_OK):
            return Path(d)
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin. "
        "Install them, e.g. `apt-get install postgresql`."
    )


def _is_root() -> bool:
    return os.geteuid() == 0


def _pg_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError as e:
        raise RuntimeError(
            f"Running as root, but there is no `{PG_SYSTEM_USER}` system user to run Postgres as "
            "(Postgres refuses to run as root). Install the postgresql package or run as a normal user."
        ) from e


def _as_pg(cmd: list[str]) -> list[str]:
    if _is_root():
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", PG_SYSTEM_USER, "--", *cmd]
    return cmd


def _pg_can_traverse(path: Path) -> bool:
    """Whether the postgres user can reach ``path`` (search permission on it and every parent)."""
    try:
        r = subprocess.run(_as_pg(["test", "-x", str(path)]), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=CMD_TIMEOUT_S, cwd="/")
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _fallback_base(state_dir: Path) -> Path:
    h = hashlib.sha1(str(state_dir).encode()).hexdigest()[:10]
    return Path(f"/var/tmp/tipai-pg-{h}")


def _layout(base: Path) -> _PgLayout:
    sock = base / "socket"
    if len(str(sock)) > _SOCKET_PATH_MAX:
        h = hashlib.sha1(str(base).encode()).hexdigest()[:10]
        sock = Path(f"/tmp/tipai-pg-sock-{h}")
    return _PgLayout(base=base, data=base / "data", log=base / "postgres.log", socket_dir=sock)


def _pg_layout(state_dir: Path, *, for_start: bool) -> _PgLayout:
    """Where this state dir's cluster lives (default STATE/postgres, or the recorded /var/tmp fallback)."""
    state_dir = Path(state_dir).resolve()
    marker = state_dir / _PG_LOCATION_FILE
    if marker.exists():
        recorded = Path(marker.read_text().strip())
        if not for_start or (recorded / "data" / "PG_VERSION").exists():
            return _layout(recorded)
    default = state_dir / "postgres"
    if not for_start:
        return _layout(default)
    if (default / "data" / "PG_VERSION").exists() or not _is_root():
        return _layout(default)
    state_dir.mkdir(parents=True, exist_ok=True)
    if _pg_can_traverse(state_dir):
        return _layout(default)
    fb = _fallback_base(state_dir)
    log.warning(
        "postgres user cannot traverse to %s; keeping the Postgres cluster in %s instead (recorded in %s)",
        state_dir, fb, marker,
    )
    marker.write_text(f"{fb}\n")
    return _layout(fb)


def postgres_base_dir(state_dir: Path) -> Path:
    """Where the Postgres files of ``state_dir`` live (STATE/postgres or the /var/tmp fallback)."""
    return _pg_layout(state_dir, for_start=False).base


def _prepare_pg_dirs(lay: _PgLayout) -> None:
    for d in (lay.base, lay.data, lay.socket_dir):
        d.mkdir(parents=True, exist_ok=True)
    lay.log.touch(exist_ok=True)
    os.chmod(lay.data, 0o700)
    if not _is_root():
        return
    pg = _pg_user()
    for p in (lay.base, lay.socket_dir, lay.log):
        os.chown(p, pg.pw_uid, pg.pw_gid)
    if lay.data.stat().st_uid != pg.pw_uid:
        os.chown(lay.data, pg.pw_uid, pg.pw_gid)
        for root, dirs, files in os.walk(lay.data):
            for name in dirs + files:
                os.chown(os.path.join(root, name), pg.pw_uid, pg.pw_gid, follow_symlinks=False)


def _run_pg(cmd: list[str], lay: _PgLayout, timeout: float, what: str) -> subprocess.CompletedProcess:
    try:
        # Pipes are safe here: with -l, pg_ctl points the daemonised postmaster's stdout/stderr at the log.
        return subprocess.run(_as_pg(cmd), cwd=lay.base, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x for x in (e.stdout, e.stderr) if x)
        raise _fail(f"{what} did not finish within {timeout:.0f}s", lay.log, out) from e


def _pg_running(bindir: Path, lay: _PgLayout) -> bool:
    if not (lay.data / "PG_VERSION").exists():
        return False
    r = _run_pg([str(bindir / "pg_ctl"), "-D", str(lay.data), "status"], lay, CMD_TIMEOUT_S, "pg_ctl status")
    return r.returncode == 0


def _postmaster_info(lay: _PgLayout) -> tuple[int, int | None]:
    """(pid, port) from postmaster.pid."""
    lines = (lay.data / "postmaster.pid").read_text().splitlines()
    pid = int(lines[0])
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    return pid, port


def _initdb(bindir: Path, lay: _PgLayout, user: str) -> None:
    # --auth=trust: acceptable ONLY because this is a local dev/test cluster that listens on 127.0.0.1
    # and a private socket dir; never expose this cluster on a non-loopback address.
    base = [str(bindir / "initdb"), "-D", str(lay.data), "-U", user, "--auth=trust", "--encoding=UTF8"]
    r = _run_pg([*base, "--locale=C.UTF-8"], lay, INITDB_TIMEOUT_S, "initdb")
    if r.returncode != 0:
        # e.g. no C.UTF-8 libc locale: retry without locale support.
        for child in lay.data.iterdir() if lay.data.exists() else []:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        r = _run_pg([*base, "--no-locale"], lay, INITDB_TIMEOUT_S, "initdb")
    if r.returncode != 0:
        lay.log.write_text(lay.log.read_text(errors="replace") + r.stdout + r.stderr)
        raise _fail(f"initdb failed for {lay.data} (status {r.returncode})", lay.log, r.stderr[-2000:])


def _ensure_database(port: int, user: str, database: str, lay: _PgLayout) -> None:
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(host="127.0.0.1", port=port, user=user, dbname="postgres",
                             autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except psycopg.Error as e:
        raise _fail(f"could not create/check database {database!r} on 127.0.0.1:{port} as {user!r}: {e}",
                    lay.log) from e


def start_postgres(state_dir: Path, port: int, user: str = "tipai", database: str = "tipai") -> ServerHandle:
    """Start (or reuse) a Postgres on 127.0.0.1:port whose cluster belongs to ``state_dir``; ensure ``database``."""
    bindir = _find_pg_bindir()
    if _is_root():
        _pg_user()
    lay = _pg_layout(state_dir, for_start=True)
    _prepare_pg_dirs(lay)
    url = f"postgresql+psycopg://{user}@127.0.0.1:{port}/{database}"

    if not (lay.data / "PG_VERSION").exists():
        _initdb(bindir, lay, user)

    if _pg_running(bindir, lay):
        pid, running_port = _postmaster_info(lay)
        if running_port is not None and running_port != port:
            raise _fail(f"Postgres for {lay.data} is already running on port {running_port}, not {port}; "
                        "stop it first (stop_postgres / `tipai down`)", lay.log)
    else:
        if port_open(port):
            raise _fail(f"Port 127.0.0.1:{port} is already in use by another process; cannot start Postgres", lay.log)
        opts = (f"-p {port} -c listen_addresses=127.0.0.1 -k {shlex.quote(str(lay.socket_dir))} -c fsync=on")
        r = _run_pg([str(bindir / "pg_ctl"), "-D", str(lay.data), "-l", str(lay.log), "-w",
                     "-t", str(PG_START_TIMEOUT_S), "-o", opts, "start"],
                    lay, PG_START_TIMEOUT_S + 15, "pg_ctl start")
        if r.returncode != 0:
            raise _fail(f"pg_ctl start failed for {lay.data} on port {port} (status {r.returncode})",
                        lay.log, r.stdout + r.stderr)
        pid, _ = _postmaster_info(lay)

    _ensure_database(port, user, database, lay)
    return ServerHandle("postgres", url, pid, lay.log)


def stop_postgres(state_dir: Path) -> bool:
    """``pg_ctl stop -m fast`` for this state dir's cluster (as ``postgres`` when root). Whether it was running."""
    lay = _pg_layout(state_dir, for_start=False)
    if not (lay.data / "PG_VERSION").exists():
        return False
    bindir = _find_pg_bindir()
    if not _pg_running(bindir, lay):
        return False
    r = _run_pg([str(bindir / "pg_ctl"), "-D", str(lay.data), "-m", "fast", "-w", "-t", str(PG_STOP_TIMEOUT_S),
                 "stop"], lay, PG_STOP_TIMEOUT_S + 15, "pg_ctl stop")
    if r.returncode != 0 and _pg_running(bindir, lay):
        r2 = _run_pg([str(bindir / "pg_ctl"), "-D", str(lay.data), "-m", "immediate", "-w", "-t", "15", "stop"],
                     lay, 30, "pg_ctl stop -m immediate")
        raise _fail(f"pg_ctl stop -m fast failed for {lay.data} (status {r.returncode}); "
                    f"immediate stop {'succeeded' if r2.returncode == 0 else 'also failed'}",
                    lay.log, r.stdout + r.stderr)
    return True


def restart_postgres(state_dir: Path, port: int, user: str = "tipai", database: str = "tipai") -> ServerHandle:
    stop_postgres(state_dir)
    return start_postgres(state_dir, port, user=user, database=database)
