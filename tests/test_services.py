"""Real local Redis + Postgres started from a tmp state dir: start, reuse, restart (data survives), stop."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from tipai_queue import services
from tipai_queue.services import (
    free_port,
    postgres_base_dir,
    restart_postgres,
    restart_redis,
    start_postgres,
    start_redis,
    stop_postgres,
    stop_redis,
)

pytestmark = pytest.mark.timeout(180)

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


def _pg_available() -> bool:
    try:
        services._find_pg_bindir()
        return True
    except RuntimeError:
        return False


needs_pg = pytest.mark.skipif(not _pg_available(), reason="PostgreSQL server binaries not installed")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def state_dir(tmp_path: Path):
    state = tmp_path / "state"
    yield state
    # Always tear down, even when the test failed half-way.
    try:
        stop_redis(state)
    finally:
        pg_base = postgres_base_dir(state)
        try:
            stop_postgres(state)
        finally:
            if not pg_base.is_relative_to(tmp_path):  # the /var/tmp fallback: don't leave it behind
                shutil.rmtree(pg_base, ignore_errors=True)


def test_free_port_is_bindable():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@needs_redis
def test_redis_start_reuse_restart_stop(state_dir: Path):
    import redis

    port = free_port()
    t0 = time.monotonic()
    h = start_redis(state_dir, port)
    print(f"redis started in {time.monotonic() - t0:.2f}s")
    assert h.name == "redis" and h.url == f"redis://127.0.0.1:{port}" and h.pid > 0
    assert h.log == (state_dir / "redis" / "redis.log").resolve()

    r = redis.Redis.from_url(h.url, socket_timeout=5)
    assert r.ping()
    r.set("tipai:survives", "yes")
    r.rpush("tipai:queue", "m1", "m2")

    again = start_redis(state_dir, port)  # idempotent
    assert again.pid == h.pid

    t0 = time.monotonic()
    h2 = restart_redis(state_dir, port)
    print(f"redis restarted in {time.monotonic() - t0:.2f}s")
    assert h2.pid != h.pid
    r = redis.Redis.from_url(h2.url, socket_timeout=5)
    assert r.get("tipai:survives") == b"yes"
    assert r.lrange("tipai:queue", 0, -1) == [b"m1", b"m2"]
    assert any((state_dir / "redis").glob("appendonlydir*")) or (state_dir / "redis" / "appendonly.aof").exists()

    assert stop_redis(state_dir) is True
    assert not _answers(port)
    assert stop_redis(state_dir) is False  # no-op when not running, and says so (`tipai down` reports it)


@needs_pg
def test_postgres_start_reuse_restart_stop(state_dir: Path):
    import sqlalchemy as sa

    port = free_port()
    t0 = time.monotonic()
    h = start_postgres(state_dir, port)
    print(f"postgres first start (initdb + createdb) in {time.monotonic() - t0:.2f}s")
    assert h.name == "postgres"
    assert h.url == f"postgresql+psycopg://tipai@127.0.0.1:{port}/tipai"
    assert h.pid > 0 and h.log.exists()

    eng = sa.create_engine(h.url, connect_args={"connect_timeout": 10})
    try:
        with eng.begin() as c:
            assert c.execute(sa.text("SELECT 1")).scalar() == 1
            assert c.execute(sa.text("SELECT current_database()")).scalar() == "tipai"
            c.execute(sa.text("CREATE TABLE survivor (id int primary key, v text)"))
            c.execute(sa.text("INSERT INTO survivor VALUES (1, 'still here')"))
    finally:
        eng.dispose()

    again = start_postgres(state_dir, port)  # idempotent
    assert again.pid == h.pid

    t0 = time.monotonic()
    h2 = restart_postgres(state_dir, port)
    print(f"postgres restart in {time.monotonic() - t0:.2f}s")
    assert h2.pid != h.pid
    eng = sa.create_engine(h2.url, connect_args={"connect_timeout": 10})
    try:
        with eng.connect() as c:
            assert c.execute(sa.text("SELECT v FROM survivor WHERE id = 1")).scalar() == "still here"
    finally:
        eng.dispose()

    assert stop_postgres(state_dir) is True
    assert not _answers(port)
    assert stop_postgres(state_dir) is False  # no-op when not running, and says so


@needs_pg
def test_postgres_wrong_port_while_running_is_a_clear_error(state_dir: Path):
    port = free_port()
    start_postgres(state_dir, port, database="other")
    with pytest.raises(RuntimeError, match="already running on port"):
        start_postgres(state_dir, free_port())


def test_stop_is_noop_on_empty_state_dir(tmp_path: Path):
    assert stop_redis(tmp_path / "nothing") is False
    assert stop_postgres(tmp_path / "nothing") is False
