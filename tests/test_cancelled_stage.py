"""A stage interrupted by Celery's cancellation (SIGTERM to the pool process, which billiard turns into SystemExit)
must leave its image for redelivery, even when a library on the way converts the interruption into an ordinary
error, as diffusers' weight loader does with anything raised while it reads a checkpoint."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, signal, sys
from billiard.common import reset_signals
from workers.tasks import run_stage

class Stage:
    image_id = "i-test"
    failed = []
    def fail(self, exc):
        self.failed.append(exc)

def interrupted_load():
    if sys.argv[1] == "terminate":
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)  # let the handler run here, inside the load
        except SystemExit:
            raise OSError("Unable to load weights from checkpoint file")
    raise OSError("Unable to load weights from checkpoint file")

reset_signals()  # the handlers billiard installs in every pool process
stage = Stage()
try:
    run_stage(stage, interrupted_load)
except OSError:
    pass
print("failed" if stage.failed else "left for redelivery")
"""


def outcome(how: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT, how], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_an_error_after_a_terminate_signal_leaves_the_image_for_redelivery():
    assert outcome("terminate") == "left for redelivery"


def test_the_same_error_without_a_signal_fails_the_image():
    assert outcome("plain") == "failed"
