"""`tipai up` beside a stack an earlier `tipai up --detach` left running: nothing is started twice, and the record
that `tipai down` reads keeps every process, so `down` still stops them all. Real processes throughout."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.helpers import tipai
from tipai_queue.settings import get_settings
from tipai_queue.stack import Stack, _alive, down, recorded_processes

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _settings(state_dir: Path):
    return get_settings().model_copy(update={"state_dir": state_dir})


def test_second_up_adopts_the_first_and_down_stops_both(tmp_path: Path):
    settings = _settings(tmp_path)
    first = Stack(settings)  # what a detached `tipai up` leaves behind
    first.spawn("flower", SLEEPER)
    first.spawn("cpu", SLEEPER)
    early = {name: proc.pid for name, proc in first.processes.items()}

    second = Stack(settings, adopted=recorded_processes(settings))
    assert second.adopted == early
    second.start_flower()
    assert "flower" not in second.processes  # a second Flower would only fail to bind its port
    second.spawn("demo", SLEEPER)
    assert recorded_processes(settings).keys() == {"flower", "cpu", "demo"}

    second.stop()  # what `tipai run` does when its batch is done
    assert all(_alive(pid) for pid in early.values())
    assert recorded_processes(settings) == early

    stopped = down(settings)
    assert sorted(stopped) == ["cpu", "flower"]  # and not the servers: none runs from this state folder
    for proc in first.processes.values():
        proc.wait(timeout=10)
    assert recorded_processes(settings) == {}


def test_a_dead_recorded_process_is_not_adopted(tmp_path: Path):
    settings = _settings(tmp_path)
    first = Stack(settings)
    first.spawn("demo", [sys.executable, "-c", "pass"])
    first.spawn("cpu", SLEEPER)
    first.processes["demo"].wait(timeout=10)
    assert recorded_processes(settings) == {"cpu": first.processes["cpu"].pid}
    first.stop()
    assert not (tmp_path / "stack.json").exists()


def test_down_with_nothing_running_says_so(tmp_path: Path):
    done = tipai("down", env={"TIPAI_STATE_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "nothing was running" in done.stdout and "stopped" not in done.stdout
