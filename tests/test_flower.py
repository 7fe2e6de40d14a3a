"""Flower as `tipai up` starts it, on the test broker: basic auth is enforced, the workers are named so GPU and CPU
workers are told apart, and a finished job's tasks are listed with ids, not prompts, as arguments."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers import job_id_from, tipai
from tipai_queue import services

pytestmark = pytest.mark.integration

USER, PASSWORD = "watcher", "not-a-default-password"


def get(url: str, auth: tuple[str, str] | None = None):
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def flower(workers, stack_services, tmp_path_factory):
    from tipai_queue.stack import flower_command, flower_env

    settings = stack_services.model_copy(update={"flower_port": services.free_port()})
    log = tmp_path_factory.mktemp("flower") / "flower.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            flower_command(settings), stdout=out, stderr=subprocess.STDOUT, env=os.environ | flower_env(USER, PASSWORD)
        )
    base = f"http://{settings.flower_host}:{settings.flower_port}"
    deadline = time.monotonic() + 60
    while not services.port_open(settings.flower_port):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def test_api_needs_the_credentials(flower):
    for auth in (None, (USER, "wrong")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(f"{flower}/api/workers", auth)
        assert refused.value.code == 401


def test_lists_named_workers_and_a_finished_jobs_tasks_by_id(flower, tmp_path):
    deadline = time.monotonic() + 30
    while True:
        names = set(get(f"{flower}/api/workers?refresh=1", (USER, PASSWORD)))
        if any(n.startswith("gen0@") for n in names) and any(n.startswith("cpu@") for n in names):
            break
        assert time.monotonic() < deadline, f"workers seen by Flower: {names}"
        time.sleep(1)

    batch = tmp_path / "flower.json"
    batch.write_text(json.dumps([{"id": "vase", "prompt": "a sunflower in a blue vase, seen by Flower"}]))
    result = tipai("submit", str(batch), "--images", "2", "--force", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = job_id_from(result.stdout)

    # Flower learns of tasks from worker events, which may trail the database by a moment.
    deadline = time.monotonic() + 30
    while True:
        tasks = get(f"{flower}/api/tasks?limit=1000", (USER, PASSWORD)).values()
        ours = [t for t in tasks if job_id in (t.get("args") or "")]
        done = [t for t in ours if t["state"] == "SUCCESS"]
        if len(done) == 2 * 3 + 1:  # generate, score, heatmap per image; one pair
            break
        assert time.monotonic() < deadline, ours
        time.sleep(1)
    assert sorted(t["name"] for t in done) == sorted(["tipai.generate", "tipai.score", "tipai.heatmap"] * 2 + ["tipai.pair"])
    for task in done:
        assert re.fullmatch(r"[\[(]('[A-Za-z0-9_-]+',? ?)+[\])]", task["args"]), task["args"]  # ids only
        assert "sunflower" not in task["args"]
        assert task["worker"].split("@")[0] == ("gen0" if task["name"] in ("tipai.generate", "tipai.score") else "cpu")
