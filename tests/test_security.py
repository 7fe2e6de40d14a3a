"""What the broker carries and where files may go: a pickle never runs on a worker, artifact paths come only
from validated ids, and the monitoring UI stays on loopback behind a password unless configured otherwise."""

from __future__ import annotations

import os
import time

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from tipai_queue import artifacts
from tipai_queue.settings import Settings


class Payload:
    """Unpickling this creates a folder: proof that the worker ran code sent by whoever could write to Redis."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.integration
def test_worker_refuses_a_pickled_message(workers, stack_services, tmp_path):
    from tipai_queue.celery_app import app

    marker = tmp_path / "pwned"
    log = stack_services.state_dir / "logs" / "cpu.log"
    offset = log.stat().st_size
    broker = redis.Redis.from_url(stack_services.broker_url)
    app.send_task("tipai.pair", args=(Payload(str(marker)), "p1"), serializer="pickle", queue="cpu")
    deadline = time.monotonic() + 30
    while "untrusted content" not in log.read_bytes()[offset:].decode(errors="replace"):
        assert time.monotonic() < deadline, log.read_bytes()[offset:].decode(errors="replace")
        time.sleep(0.2)
    assert "application/x-python-serialize" in log.read_bytes()[offset:].decode(errors="replace")
    assert broker.llen("cpu") == 0  # taken off the queue, not left to be retried
    assert not marker.exists()


@pytest.mark.parametrize(
    "crafted",
    ["..", "../etc", "/etc/passwd", "a/b", "a\\b", "", " a", "a b", "a;rm -rf ~", "$(id)", "`id`", "a\x00b",
     "a\nb", "a\n", "ａ", "x" * 201, "-rf", ".hidden", "a.png"],
)
def test_crafted_ids_never_become_paths(tmp_path, crafted):
    with pytest.raises(ValueError, match="refusing to build a path"):
        artifacts.image_path(tmp_path, crafted, "p1", 0)
    with pytest.raises(ValueError, match="refusing to build a path"):
        artifacts.image_path(tmp_path, "j1", crafted, 0)
    with pytest.raises(ValueError, match="refusing to build a path"):
        artifacts.heatmap_path(tmp_path, "j1", crafted)
    with pytest.raises(ValueError, match="refusing to build a path"):
        artifacts.comparison_path(tmp_path, crafted, "p1")


@given(job=st.text(max_size=80), prompt=st.text(max_size=80), seed=st.integers(0, 2**32 - 1))
def test_every_artifact_path_is_inside_the_root_or_refused(tmp_path_factory, job, prompt, seed):
    root = tmp_path_factory.getbasetemp() / "root"
    try:
        path = artifacts.image_path(root, job, prompt, seed)
    except ValueError:
        return
    assert path.parent.parent.parent == root.resolve() and path.name == f"{prompt}_{seed}.png"


def test_flower_listens_on_loopback_with_a_password_by_default(tmp_path, monkeypatch):
    from tipai_queue.stack import flower_command, flower_credentials, flower_env

    for name in ("TIPAI_FLOWER_HOST", "TIPAI_FLOWER_USER", "TIPAI_FLOWER_PASSWORD", "TIPAI_DEMO_HOST"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None, state_dir=tmp_path)
    assert settings.flower_host == "127.0.0.1" and settings.demo_host == "127.0.0.1"
    user, password = flower_credentials(settings)
    assert len(password) >= 16 and (tmp_path / "flower-password").stat().st_mode & 0o077 == 0
    command = flower_command(settings)
    assert "--address=127.0.0.1" in command and not any(password in part for part in command)  # not in `ps`
    assert flower_env(user, password) == {"FLOWER_BASIC_AUTH": f"{user}:{password}"}
    assert flower_credentials(settings) == (user, password)  # stable across restarts


def test_broker_accepts_json_only():
    from tipai_queue.celery_app import app

    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == app.conf.result_serializer == "json"
