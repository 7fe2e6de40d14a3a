"""Redis and Postgres restarting under a running job, an artifact folder that refuses files, and two submitters
racing on one batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from tests.faults.conftest import wait_for_running
from tipai_queue import services
from tipai_queue.models import ImageStatus

pytestmark = pytest.mark.integration

SLOW = {"TIPAI_SLOW_TASKS_S": "1"}
OUTAGE_S = 4
SUBMITTER = textwrap.dedent(
    """
    # One long-lived submitter (as the demo is): submits each batch when its .go file appears.
    import sys, time
    from pathlib import Path
    from tipai_queue.batch import build_options, load_batch
    from tipai_queue.settings import get_settings
    from tipai_queue.submit import submit

    settings = get_settings()
    options = build_options(settings, seeds=[0, 1])
    for name in sys.argv[1:]:
        while not Path(name + ".go").exists():
            time.sleep(0.05)
        print(submit(load_batch(Path(name), options, settings), settings, force=True).job_id, flush=True)
    """
)


def test_redis_restart_mid_job(faults, recovery_times):
    """Redis stops (SIGTERM: it writes its append-only file) and starts again while images are running. Workers
    and a long-lived submitter reconnect; an image whose message was in a worker's hands at the restart is
    finished by reconcile if it stalls."""
    env = {**SLOW, "TIPAI_VISIBILITY_TIMEOUT_S": "10"}
    faults.start_workers(**env)
    # The drill strikes under running work, not under a worker's first, lazy model load: a cancellation during the
    # load is covered by tests/test_cancelled_stage.py, and here it would only make the timing depend on load time.
    warm = faults.submit(faults.write_batch("redis-warm", [{"id": "w", "prompt": "a kite"}]), "--seeds", "0,1")
    faults.wait_until(lambda: faults.finished(warm, 1), 120, "warm-up job finished")
    first = faults.write_batch("redis-a", [{"id": "a", "prompt": "a red kite"}, {"id": "b", "prompt": "a blue kite"}])
    second = faults.write_batch("redis-b", [{"id": "c", "prompt": "a green kite"}])
    submitter = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER, str(first), str(second)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**faults.subprocess_env(), **env},
    )
    try:
        first.with_name(first.name + ".go").touch()
        job_a = submitter.stdout.readline().strip()
        assert job_a.startswith("j"), submitter.stderr.read() if submitter.poll() is not None else job_a
        wait_for_running(faults, job_a, ImageStatus.GENERATING)
        began = time.monotonic()
        services.restart_redis(faults.state, faults.redis_port)
        restart_s = time.monotonic() - began
        second.with_name(second.name + ".go").touch()
        job_b = submitter.stdout.readline().strip()
        submitted_after_s = time.monotonic() - began
        assert job_b.startswith("j"), submitter.stderr.read()
    finally:
        submitter.kill()
        submitter.wait()
    jobs = {job_a: ["a", "b"], job_b: ["c"]}

    def all_finished() -> bool:
        return all(faults.finished(job, len(prompts)) for job, prompts in jobs.items())

    reconciled = []

    def finished_with_reconcile() -> bool:
        # What the beat does every TIPAI_RECONCILE_EVERY_S, here every 5 s: an image only counts as stuck once it
        # has sat 5 s, so one early pass can miss an image that stalls later.
        if all_finished():
            return True
        reconciled.append(" ".join(faults.tipai("reconcile", "--stuck-after", "5").stdout.split()))
        return all_finished()

    try:
        faults.wait_until(all_finished, 30, "jobs finished on their own")
    except pytest.fail.Exception:
        # A message the worker held when Redis went away: the worker could not give it back (Redis was down) and
        # Redis restores it only after the visibility timeout, on kombu's own slow schedule. Or a stage finished
        # while Redis was down and could not queue the next one. Reconcile requeues either image.
        faults.wait_until(finished_with_reconcile, 120, f"jobs finished with reconcile ({reconciled})", poll=5)
    done_s = time.monotonic() - began
    for job, prompts in jobs.items():
        faults.assert_complete(job, prompts, [0, 1])
    recovery_times["redis restart mid-job"] = {
        "redis_restart_s": restart_s, "resubmit_after_restart_s": submitted_after_s,
        "job_done_after_restart_s": done_s, "needed_reconcile": "; ".join(reconciled) or "no",
    }


def test_postgres_restart_mid_job(faults, recovery_times):
    """Postgres stops (fast shutdown: open connections are cut) for a few seconds while images are running; tasks
    that find no database retry with backoff and complete."""
    faults.start_workers(**SLOW)
    job = faults.submit(faults.write_batch("postgres", [{"id": "a", "prompt": "a yellow boat"}]), "--seeds", "0,1,2")
    wait_for_running(faults, job, ImageStatus.GENERATING)
    began = time.monotonic()
    services.stop_postgres(faults.state)
    time.sleep(OUTAGE_S)
    # Keep it down until a task has felt the outage and scheduled a retry: on a loaded machine a fixed pause can end
    # before the running task reaches its next write.
    faults.wait_until(
        lambda: any("Retry in" in faults.log(name) for name in ("gen0", "cpu")), 60, "a task retrying during the outage"
    )
    services.start_postgres(faults.state, faults.pg_port)
    back = time.monotonic()
    faults.engine.dispose()
    faults.wait_until(lambda: faults.finished(job, 1), 180, "job finished")
    done_s = time.monotonic() - back
    faults.assert_complete(job, ["a"], [0, 1, 2])
    retries = sum(faults.log(name).count("Retry in") for name in ("gen0", "cpu"))
    assert retries >= 1, faults.log("gen0")[-3000:]  # the outage was felt, and retried through
    recovery_times["postgres down mid-job"] = {
        "postgres_down_s": back - began, "job_done_after_postgres_back_s": done_s, "task_retries": str(retries),
    }


def test_unwritable_artifact_folder_fails_the_image_with_a_reason(faults, recovery_times):
    """The job's image folder is a regular file (root ignores permission bits, but not that): every generate fails
    for good with a message naming the folder, and nothing is left half-written."""
    job = faults.submit(faults.write_batch("unwritable", [{"id": "a", "prompt": "a snowman"}]), "--seeds", "0,1")
    folder = faults.artifact_root / job
    folder.mkdir(parents=True)
    (folder / "images").write_text("not a folder")
    began = time.monotonic()
    faults.start_workers(cpu=True)
    faults.wait_until(lambda: all(i.status == ImageStatus.FAILED for i in faults.images(job)), 90, "images failed")
    failed_s = time.monotonic() - began
    images = faults.images(job)
    for image in images:
        assert image.error.startswith("ArtifactWriteError: cannot write "), image.error
        assert f"{folder / 'images'}: it is not a folder" in image.error
        assert image.path is None and image.generated_at is None
    assert faults.counts(job) == {"jobs": 1, "prompts": 1, "images": 2, "scores": 0, "pairs": 0}
    assert sorted(p.name for p in folder.rglob("*")) == ["images"]  # nothing else, no temporary files
    status = faults.tipai("status", job, "--errors")
    squeezed = "".join(status.stdout.split())  # the table wraps long lines anywhere
    assert "itisnotafolder" in squeezed and "0/2imagesdone,2failed" in squeezed
    assert "heatmaps:" not in status.stdout and "pairs:" not in status.stdout  # no folder that does not exist
    recovery_times["artifact folder unwritable"] = {"images_failed_after_start_s": failed_s}


def test_full_disk_mid_write_leaves_no_file(tmp_path):
    """A write that runs out of room part-way (RLIMIT_FSIZE stands in for a full disk; it binds root too) raises a
    clear error and leaves neither the target nor the temporary file."""
    script = textwrap.dedent(
        """
        import resource, sys
        from pathlib import Path
        import numpy as np
        from PIL import Image
        from tipai_queue.artifacts import ArtifactWriteError, save_png

        noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            save_png(noise, Path(sys.argv[1]) / "images" / "a_0.png")
        except ArtifactWriteError as exc:
            print(exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith(f"cannot write {tmp_path / 'images' / 'a_0.png'}: File too large"), result
    assert list((tmp_path / "images").iterdir()) == []


def test_same_batch_submitted_twice_at_once(faults, recovery_times):
    """Two processes submit one batch at the same moment: one writes the rows and enqueues, the other finds the
    job; exactly one set of rows and one message per image."""
    for round_ in range(3):
        prompts = [{"id": f"p{i}", "prompt": f"race {round_}: object {i}"} for i in range(200)]
        batch = faults.write_batch(f"race-{round_}", prompts)
        began = time.monotonic()
        racers = [faults.popen("submit", str(batch), "--seeds", "0,1") for _ in range(2)]
        outputs = [racer.communicate(timeout=120) for racer in racers]
        elapsed = time.monotonic() - began
        assert [racer.returncode for racer in racers] == [0, 0], outputs
        job_ids = {line.split("=", 1)[1] for out, _ in outputs for line in out.splitlines() if line.startswith("job_id=")}
        assert len(job_ids) == 1
        [job] = job_ids
        assert sorted("images queued" in out for out, _ in outputs) == [False, True], outputs
        assert faults.counts(job) == {"jobs": 1, "prompts": 200, "images": 400, "scores": 0, "pairs": 0}
        queued = [args[0] for args in faults.queued_args()]
        assert sorted(queued) == sorted(f"{job}_p{i}_{s}" for i in range(200) for s in (0, 1))
        faults.broker.flushall()
    recovery_times["same batch submitted twice at once"] = {"both_submitters_done_s": elapsed}
