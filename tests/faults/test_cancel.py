"""`tipai cancel`: queued messages of the job leave the broker, running ones stop after their current step, other
jobs are untouched, and nothing (pairing, reconcile, resubmission) starts the job again."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import wait_for_running
from tipai_queue.models import ImageStatus, Job

pytestmark = pytest.mark.integration


def test_cancel_purges_queued_messages_of_that_job_only(faults):
    first = faults.tipai("submit", str(faults.write_batch("cancel-a", ["a dog", "a cat", "a cow"])), "--seeds", "0,1")
    doomed = first.stdout.split("job_id=")[1].strip()  # not --force: the resubmission below must find this job
    kept = faults.submit(faults.write_batch("cancel-b", ["a hen"]), "--seeds", "0,1")
    assert len(faults.queued_args()) == 8

    result = faults.tipai("cancel", doomed)
    assert result.returncode == 0, result.stderr
    assert f"job {doomed} cancelled: 6 image(s) left undone, 6 queued message(s) removed" in " ".join(result.stdout.split())
    assert sorted(args[0] for args in faults.queued_args()) == [f"{kept}_p01_0", f"{kept}_p01_1"]
    with faults.session() as session:
        assert session.get(Job, doomed).cancelled_at is not None
        assert session.get(Job, kept).cancelled_at is None

    status = faults.tipai("status", doomed)
    assert status.returncode == 0 and "job cancelled; 6 image(s) left undone" in " ".join(status.stdout.split())
    again = faults.tipai("cancel", doomed)
    assert again.returncode == 0 and "already cancelled" in again.stdout
    resubmitted = faults.tipai("submit", str(faults.state / "cancel-a.json"), "--seeds", "0,1")
    assert resubmitted.returncode == 0 and "and cancelled; --force runs it again" in " ".join(resubmitted.stdout.split())
    listed = faults.tipai("jobs")  # piped, so rich lays the table out in 80 columns
    assert any(doomed in line and "cancelled" in line for line in listed.stdout.splitlines()), listed.stdout
    assert len(faults.queued_args()) == 2  # a cancelled job is never enqueued again
    unknown = faults.tipai("cancel", "jnothere")
    assert unknown.returncode == 2 and "no job 'jnothere'" in unknown.stderr


def test_cancel_stops_a_running_job_after_the_current_step(faults):
    faults.start_workers(TIPAI_SLOW_TASKS_S="1")
    job = faults.submit(faults.write_batch("cancel-running", ["a fox", "an owl", "a bee"]), "--seeds", "0,1")
    wait_for_running(faults, job, ImageStatus.GENERATING)
    result = faults.tipai("cancel", job)
    assert result.returncode == 0 and "cancelled" in result.stdout, result.stderr

    def settled() -> bool:
        return not any(i.status in ImageStatus.RUNNING for i in faults.images(job))

    faults.wait_until(settled, 60, "the running step to end")
    before = [(i.image_id, i.status, i.updated_at) for i in faults.images(job)]
    assert any(status == ImageStatus.QUEUED for _, status, _ in before)  # the rest never started
    reconcile = faults.tipai("reconcile", "--stuck-after", "0")
    assert "images requeued: 0" in reconcile.stdout and "prompts sent to pairing: 0" in reconcile.stdout
    time.sleep(3)  # anything still queued for the job would have started by now
    assert [(i.image_id, i.status, i.updated_at) for i in faults.images(job)] == before
    assert faults.counts(job)["pairs"] == 0
    assert faults.queued_args() == [] and faults.queued_args("cpu") == []
