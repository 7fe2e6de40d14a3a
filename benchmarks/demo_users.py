"""Several people generating on the demo page at the same moment: the demo runs as its own process (`python -m
frontend`) on a private stack with one generation worker and one CPU worker, and N simulated users press Generate
together through the page's HTTP API (gradio_client, endpoint /generate), each with a prompt of their own and 4
images, so each follows a job of its own.

Per user, read from Postgres as the page does, from the moment everyone pressed Generate: time to the job's row
(late when a press waits in Gradio's queue for a free session), to the first image and to the full result (the
pair). Also the wall time until every page had finished following its job, the demo process's peak RSS, and
whether every user got exactly 4 done images and 1 pair, one job each, nothing left queued.

    python -m benchmarks.demo_users --json results.json            # 10 users, tiny preset
    python -m benchmarks.demo_users --users 20
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.common import isolate, running_stack, write_json

IMAGES = 4
POLL_S = 0.25  # finer would load the two cores the workers and the demo share
TIMEOUT_S = 600  # a stalled page fails the run instead of hanging it
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def start_demo(settings) -> tuple[subprocess.Popen, str]:
    from tipai_queue.services import free_port

    port = free_port()
    log = settings.state_dir / "logs" / "demo.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "frontend"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=PROJECT_ROOT, env={**os.environ, "TIPAI_DEMO_PORT": str(port)},
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo exited with status {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the demo did not answer on {url} within 120 s; see {log}")
        time.sleep(0.5)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def jobs_by_prompt(prompts: list[str]) -> dict[str, list[str]]:
    from sqlalchemy import select

    from tipai_queue import db
    from tipai_queue.models import Prompt

    found: dict[str, list[str]] = {}
    with db.session_scope() as session:
        for prompt, job_id in session.execute(select(Prompt.prompt, Prompt.job_id).where(Prompt.prompt.in_(prompts))):
            found.setdefault(prompt, []).append(job_id)
    return found


def watch(prompts: list[str], started: float, pages_done: threading.Event) -> dict[str, dict[str, float]]:
    """Seconds from `started` to each prompt's job being submitted, to its first generated image and to its pair."""
    from tipai_queue.progress import job_progress

    times: dict[str, dict[str, float]] = {prompt: {} for prompt in prompts}
    while time.perf_counter() - started < TIMEOUT_S:
        last_pass = pages_done.is_set()  # one more look after the pages stop, for a pair written since the last
        now = time.perf_counter() - started
        for prompt, job_ids in jobs_by_prompt(prompts).items():
            if len(times[prompt]) == 3:
                continue
            times[prompt].setdefault("submitted_s", now)
            state = job_progress(job_ids[0])
            if state.generated and "first_image_s" not in times[prompt]:
                times[prompt]["first_image_s"] = now
            if state.pairs and "full_result_s" not in times[prompt]:
                times[prompt]["full_result_s"] = now
        if last_pass or all(len(row) == 3 for row in times.values()):
            break
        time.sleep(POLL_S)
    return times


def check(prompts: list[str]) -> dict[str, str]:
    """Per prompt, what is wrong with its rows ("" when it has exactly one job, 4 done images, 1 pair)."""
    from sqlalchemy import func, select

    from tipai_queue import db
    from tipai_queue.models import Image, ImageStatus, Pair

    problems = {}
    jobs = jobs_by_prompt(prompts)
    with db.session_scope() as session:
        for prompt in prompts:
            job_ids = jobs.get(prompt, [])
            if len(job_ids) != 1:
                problems[prompt] = f"{len(job_ids)} jobs"
                continue
            statuses = session.scalars(select(Image.status).where(Image.job_id == job_ids[0])).all()
            seeds = session.scalars(select(Image.seed).where(Image.job_id == job_ids[0])).all()
            pairs = session.scalar(select(func.count()).where(Pair.job_id == job_ids[0]))
            done = statuses.count(ImageStatus.DONE)
            ok = len(statuses) == IMAGES and done == IMAGES and len(set(seeds)) == IMAGES and pairs == 1
            problems[prompt] = "" if ok else f"{len(statuses)} images ({done} done, {len(set(seeds))} seeds), {pairs} pairs"
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--json", metavar="FILE", help="Also write the results here.")
    args = parser.parse_args()
    # Stopped from outside, still stop the demo, the workers and the services (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    isolate("tiny")
    from gradio_client import Client

    from tipai_queue.queues import queue_lengths

    prompts = [f"user {n}: a red car on the beach at dawn, view {n}" for n in range(args.users)]
    with running_stack() as settings:
        demo, url = start_demo(settings)
        try:
            clients = [
                Client(url, verbose=False, download_files=str(settings.state_dir / f"client{n}"))
                for n in range(args.users)
            ]
            pages_done = threading.Event()
            started = time.perf_counter()
            jobs = [
                client.submit(prompt, IMAGES, "", "tiny", settings.grid, settings.method, api_name="/generate")
                for client, prompt in zip(clients, prompts, strict=True)
            ]

            finals: list[str] = []

            def wait_pages() -> None:
                for job in jobs:
                    try:
                        finals.append(str(job.result(timeout=max(1, started + TIMEOUT_S - time.perf_counter()))))
                    except Exception as exc:  # an error box, a dropped stream or a timeout: that page failed
                        finals.append(f"{type(exc).__name__}: {exc}")
                pages_done.set()

            waiter = threading.Thread(target=wait_pages)
            waiter.start()
            times = watch(prompts, started, pages_done)
            waiter.join()
            wall = time.perf_counter() - started
            rss = peak_rss_mb(demo.pid)
        finally:
            demo.terminate()
            demo.wait(timeout=30)
        problems = check(prompts)
        queued = queue_lengths()

    print(f"{'user':>4}  {'submitted s':>11}  {'first image s':>13}  {'full result s':>13}  page finished  rows")
    for n, (prompt, final) in enumerate(zip(prompts, finals, strict=True)):
        page_ok = "finished in" in final  # the page's own "finished in N s", shown only with the pair
        row = [times[prompt].get(key, float("nan")) for key in ("submitted_s", "first_image_s", "full_result_s")]
        print(f"{n:>4}  {row[0]:>11.1f}  {row[1]:>13.1f}  {row[2]:>13.1f}  {'yes' if page_ok else 'NO':>13}  "
              f"{problems[prompt] or 'ok'}")
        if not page_ok:
            problems[prompt] += " page did not show the finished job"
    firsts = [times[p].get("first_image_s", float("inf")) for p in prompts]
    fulls = [times[p].get("full_result_s", float("inf")) for p in prompts]
    results = {
        "users": args.users,
        # a press that waits for a free session in Gradio's queue is submitted late: this shows it
        "submitted_s": {"max": round(max(times[p].get("submitted_s", float("inf")) for p in prompts), 2)},
        "first_image_s": {"median": round(statistics.median(firsts), 2), "max": round(max(firsts), 2)},
        "full_result_s": {"median": round(statistics.median(fulls), 2), "max": round(max(fulls), 2)},
        "wall_s": round(wall, 2),
        "demo_peak_rss_mb": round(rss, 1),
        "queued_after": queued,
        "all_complete": not any(problems.values()) and not any(queued.values()),
    }
    write_json(args.json, results)
    if not results["all_complete"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
