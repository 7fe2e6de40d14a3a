"""Load benchmark: one large job through a private stack on this machine.

Submits a 5 000-prompt × 4-seed job (20 000 images) on the tiny preset and measures the submit time and the peak
memory of the submitter and of Redis; lets one generation worker and one CPU worker drain it for a fixed window
and measures the drain rate and the database and disk bytes per image; then cancels the rest with `tipai cancel`
and checks that nothing of the job is left queued.

    .venv/bin/python benchmarks/load.py [--prompts 5000] [--seeds 4] [--window 60] [--json FILE]

Everything runs in a throw-away state folder on free ports (own Redis, Postgres, artifact folder and workers),
removed at the end unless --keep."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tipai_queue import services  # noqa: E402  (settings are read from the environment set in main)
from tipai_queue.stack import private_env  # noqa: E402


# Run argv[1:] and print its exit status and its own peak RSS in KiB. The command is spawned from this small
# wrapper because a child exec'd straight from a large process reports that process's RSS as its own peak
# (Linux carries the pre-exec high-water mark over).
PEAK_RSS = (
    "import os, sys; pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ); "
    "_, status, usage = os.wait4(pid, 0); print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)"
)


def run_measured(cmd: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS in MB (of the command alone), exit status and output of a command."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - started
    *output, last = result.stderr.rstrip("\n").split("\n")
    status, peak_kb = map(int, last.split())
    return wall, peak_kb / 1024, status, result.stdout + "\n".join(output)


def queued(client, queue: str) -> int:
    from tipai_queue.cancel import PRIORITY_SUFFIXES

    return sum(client.llen(queue + suffix) for suffix in PRIORITY_SUFFIXES)


def table_bytes() -> dict[str, int]:
    from sqlalchemy import text

    from tipai_queue import db

    with db.engine().connect() as conn:
        sizes = {
            name: conn.execute(text(f"SELECT pg_total_relation_size('{name}')")).scalar_one()
            for name in ("jobs", "prompts", "images", "scores", "pairs")
        }
        sizes["database"] = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        # Table sizes of a few hundred finished rows are mostly empty pages; the rows themselves tell the cost.
        for name in ("images", "scores", "pairs"):
            sizes[f"avg_{name}_row"] = round(conn.execute(text(f"SELECT avg(pg_column_size(t.*)) FROM {name} t")).scalar() or 0)
    return sizes


def progress(job_id: str) -> tuple[int, int, int]:
    from tipai_queue.progress import job_progress

    state = job_progress(job_id)
    return state.generated, state.heatmaps, state.pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--window", type=float, default=60.0, help="seconds the workers drain the queue")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--keep", action="store_true", help="leave the state folder (services stopped)")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="tipai-load-", dir="/var/tmp"))
    state.chmod(0o755)  # the postgres system user must reach its data folder when this runs as root
    os.environ.update(
        private_env(state), TIPAI_PRESET="tiny", TIPAI_DEVICE="cpu", TIPAI_WORKER_CONCURRENCY_CPU="1", HF_HUB_OFFLINE="1"
    )

    import redis

    from tipai_queue.settings import get_settings
    from tipai_queue.stack import Stack, ensure_services, migrate

    settings = get_settings()
    numbers: dict[str, float | int | str] = {"prompts": args.prompts, "seeds": args.seeds}
    stack = Stack(settings)
    try:
        stack.services_started = ensure_services(settings)
        migrate()
        client = redis.Redis.from_url(settings.broker_url)
        batch = state / "load.json"
        batch.write_text(json.dumps(
            [{"id": f"p{i:05d}", "prompt": f"a photo of object {i} next to a red cube"} for i in range(args.prompts)]
        ))
        used_before = client.info("memory")["used_memory"]
        cmd = [sys.executable, "-m", "tipai_queue.cli", "submit", str(batch), "--seeds", f"0-{args.seeds - 1}"]
        wall, rss, status, output = run_measured(cmd)
        if status != 0:
            print(output, file=sys.stderr)
            return 1
        job_id = next(line.split("=", 1)[1] for line in output.splitlines() if line.startswith("job_id="))
        memory = client.info("memory")
        n_images = args.prompts * args.seeds
        numbers |= {
            "job_id": job_id,
            "images": n_images,
            "submit_wall_s": round(wall, 1),
            "submitter_peak_rss_mb": round(rss),
            "gpu_queue_messages": queued(client, "gpu"),
            "redis_used_memory_mb": round(memory["used_memory"] / 2**20, 1),
            "redis_used_memory_peak_mb": round(memory["used_memory_peak"] / 2**20, 1),
            "redis_bytes_per_queued_image": round((memory["used_memory"] - used_before) / n_images),
        }
        print(json.dumps(numbers, indent=2), flush=True)

        stack.start_workers()
        started = time.monotonic()
        while progress(job_id)[0] == 0:  # the first image pays for loading the models; the window starts after
            if time.monotonic() - started > 300:
                raise RuntimeError(f"no image generated in 300 s; see {state / 'logs'}")
            time.sleep(0.5)
        numbers["first_image_after_s"] = round(time.monotonic() - started, 1)
        generated0, done0, pairs0 = progress(job_id)
        window_started = time.monotonic()
        time.sleep(args.window)
        generated1, done1, pairs1 = progress(job_id)
        elapsed = time.monotonic() - window_started
        numbers |= {
            "window_s": round(elapsed, 1),
            "generated_per_s": round((generated1 - generated0) / elapsed, 2),
            "finished_images_per_s": round((done1 - done0) / elapsed, 2),
            "pairs_per_s": round((pairs1 - pairs0) / elapsed, 2),
        }

        cancel_wall, _, status, output = run_measured([sys.executable, "-m", "tipai_queue.cli", "cancel", job_id])
        numbers |= {"cancel_wall_s": round(cancel_wall, 1), "cancel_output": " ".join(output.split())}
        time.sleep(5)  # what the workers held when the job was cancelled ends its current step
        generated, done, pairs = progress(job_id)
        sizes = table_bytes()
        files = [p for p in (settings.artifact_root / job_id).rglob("*") if p.is_file()]
        numbers |= {
            "cancel_status": status,
            "left_queued_after_cancel": queued(client, "gpu") + queued(client, "cpu"),
            "images_generated": generated,
            "images_finished": done,
            "pairs": pairs,
            "db_bytes": sizes,
            # every image has its row from the start; a score row and its files come as it finishes
            "db_bytes_per_image_row_with_indexes": round(sizes["images"] / n_images),
            "disk_bytes_per_finished_image": round(sum(p.stat().st_size for p in files) / max(done, 1)),
        }
    finally:
        stack.stop()
        services.stop_redis(state)  # also when ensure_services failed half-way (both stops are idempotent)
        services.stop_postgres(state)
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)
    print(json.dumps(numbers, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0 if numbers["left_queued_after_cancel"] == 0 and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
