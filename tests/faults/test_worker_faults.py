"""Workers dying or stopping mid-task: the task comes back (or is finished first) and the job ends with exactly
one row, score and file per image and one pair per prompt."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.conftest import wait_for_running
from tipai_queue.models import ImageStatus

pytestmark = pytest.mark.integration

PROMPTS = [{"id": "cat", "prompt": "a cat on a mat"}]
SEEDS = [0, 1]
SLOW = {"TIPAI_SLOW_TASKS_S": "2"}


def test_pool_process_killed_mid_generate_and_mid_score_is_redelivered_at_once(faults, recovery_times):
    """SIGKILL on the prefork child: the parent sees it die and, with task_reject_on_worker_lost, puts the message
    back on the queue at once; the redelivered task redoes the stage. Struck twice in one job: in generate, then
    in score."""
    faults.start_workers(**SLOW)
    job = faults.submit(faults.write_batch("kill-pool", PROMPTS), "--seeds", "0,1")
    killed_in = {}
    for running in (ImageStatus.GENERATING, ImageStatus.SCORING):
        victim = wait_for_running(faults, job, running)
        os.kill(faults.pool_child(), signal.SIGKILL)
        killed = time.monotonic()

        def requeued(image_id=victim.image_id) -> bool:  # back on the list, or fetched from it again already
            return [image_id] in faults.queued_args() or faults.received_twice()

        def running_again(victim=victim, running=running) -> bool:
            [image] = [i for i in faults.images(job) if i.image_id == victim.image_id]
            return image.status == running and image.updated_at > victim.updated_at

        requeue_s = faults.wait_until(requeued, 10, f"{victim.image_id} back on the queue", poll=0.02)
        again_s = faults.wait_until(running_again, 60, f"{victim.image_id} running again") + requeue_s
        killed_in[running] = victim.image_id, killed, requeue_s, again_s
    faults.wait_until(lambda: faults.finished(job, 1), 90, "job finished")
    done = time.monotonic()
    images = {i.image_id: i for i in faults.assert_complete(job, ["cat"], SEEDS)}
    assert images[killed_in[ImageStatus.GENERATING][0]].attempts == 2  # generated twice, stored once
    assert faults.log("gen0").count("WorkerLostError('Worker exited prematurely: signal 9") == 2
    for running, stage in ((ImageStatus.GENERATING, "generate"), (ImageStatus.SCORING, "score")):
        _, killed, requeue_s, again_s = killed_in[running]
        recovery_times[f"sigkill pool child mid-{stage}"] = {
            "requeued_s": requeue_s, "running_again_s": again_s, "job_done_after_kill_s": done - killed,
        }


def test_whole_worker_killed_comes_back_after_the_visibility_timeout(faults, recovery_times):
    """SIGKILL on the worker and its pool: no process is left to return the message, so it sits unacked in Redis
    until the visibility timeout passes and a live worker restores it."""
    visibility = 10
    env = {**SLOW, "TIPAI_VISIBILITY_TIMEOUT_S": str(visibility)}
    faults.start_workers(**env)
    job = faults.submit(faults.write_batch("kill-worker", PROMPTS), "--seeds", "0,1")
    victim = wait_for_running(faults, job, ImageStatus.GENERATING)
    faults.kill_worker("gen0")
    killed = time.monotonic()
    faults.start_workers(cpu=False, **env)
    restarted = time.monotonic() - killed

    def back() -> bool:
        [image] = [i for i in faults.images(job) if i.image_id == victim.image_id]
        return image.attempts == 2

    # kombu restores expired unacked messages 10 s after a worker starts and then every 100 s, so allow a full cycle.
    redelivered = faults.wait_until(back, visibility + 130, f"{victim.image_id} redelivered") + restarted
    faults.wait_until(lambda: faults.finished(job, 1), 90, "job finished")
    recovered = time.monotonic() - killed
    faults.assert_complete(job, ["cat"], SEEDS)
    assert redelivered >= visibility - 1  # it really was the timeout, not an early give-back, that restored it
    recovery_times["sigkill whole worker, restarted at once"] = {
        "visibility_timeout_s": float(visibility), "worker_restart_s": restarted,
        "redelivered_s": redelivered, "job_done_after_kill_s": recovered,
    }


def test_sigterm_finishes_the_running_task_before_exiting(faults, recovery_times):
    """Warm shutdown: the worker stops taking messages, finishes the task in hand, acks it and exits; what it had
    not started stays queued for the next worker."""
    faults.start_workers(**SLOW)
    job = faults.submit(faults.write_batch("sigterm", PROMPTS), "--seeds", "0,1")
    victim = wait_for_running(faults, job, ImageStatus.GENERATING)
    process = faults.worker("gen0")
    process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    process.wait(timeout=60)
    shutdown = time.monotonic() - stopped
    [image] = [i for i in faults.images(job) if i.image_id == victim.image_id]
    assert image.generated_at is not None and image.attempts == 1  # finished, not abandoned
    faults.workers.processes.pop("gen0")
    faults.start_workers(cpu=False, **SLOW)
    faults.wait_until(lambda: faults.finished(job, 1), 90, "job finished")
    recovered = time.monotonic() - stopped
    images = faults.assert_complete(job, ["cat"], SEEDS)
    assert [i.attempts for i in images] == [1, 1]  # nothing ran twice
    recovery_times["sigterm worker mid-generate"] = {"warm_shutdown_s": shutdown, "job_done_after_sigterm_s": recovered}
