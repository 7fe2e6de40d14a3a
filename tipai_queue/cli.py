"""The `tipai` command: submit batches, watch them, keep the queue honest, and run the stack on one machine."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tipai_queue import db
from tipai_queue.batch import MAX_SEEDS_PER_PROMPT, BatchError, build_options, load_batch
from tipai_queue.progress import JobProgress, job_progress, prompt_summaries
from tipai_queue.settings import get_settings
from tipai_queue.submit import SERVICES_HINT, ServiceUnavailable, not_answering, submit as submit_batch
from sceneworld.cli import app as mini_app

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(mini_app, name="mini")
console = Console()
err = Console(stderr=True)

EXIT_FAILED_IMAGES = 1
EXIT_BAD_INPUT = 2
EXIT_SERVICE = 3


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@contextmanager
def servers_answering() -> Iterator[None]:
    """A server that does not answer ends the command with one line naming it (its URL redacted) and exit 3, not a
    driver's traceback."""
    from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import InterfaceError, OperationalError

    settings = get_settings()
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        problem = not_answering("broker", settings.broker_url, exc)
    except (OperationalError, InterfaceError) as exc:
        problem = not_answering("database", settings.database_url, exc.orig)
    else:
        return
    raise fail(f"{problem}. {SERVICES_HINT}", EXIT_SERVICE)


def read_database(query, *args):
    with servers_answering():
        return query(*args)


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    seeds = []
    for part in text.split(","):
        part = part.strip()
        try:
            low, high = (int(end) for end in part.split("-", 1)) if "-" in part[1:] else (int(part), int(part))
        except ValueError:
            raise BatchError([f"--seeds: {part!r} is not a whole number or a range like 0-3"]) from None
        if high < low:
            raise BatchError([f"--seeds: range {part} runs backwards; write it low-high, like {high}-{low}"])
        if high - low >= MAX_SEEDS_PER_PROMPT:  # refuse before building a list of a billion seeds
            raise BatchError([f"--seeds: range {part} holds {high - low + 1} seeds; at most {MAX_SEEDS_PER_PROMPT}"])
        seeds.extend(range(low, high + 1))
    return seeds


Images = Annotated[int | None, typer.Option("--images", "-n", help="Images per prompt (seeds 0..N-1). Default 4.")]
Seeds = Annotated[str | None, typer.Option(help="Explicit seeds, e.g. '0,1,2,3' or '0-3'.")]
PresetOpt = Annotated[str | None, typer.Option(help="Model preset: mini, tiny, sd-turbo, sdxl. Default TIPAI_PRESET (mini).")]
GeneratorOpt = Annotated[str | None, typer.Option(help="Diffusers model id or local folder (overrides the preset).")]
ScorerOpt = Annotated[str | None, typer.Option(help="open_clip ARCH@PRETRAINED, PRETRAINED a tag or file.")]
Width = Annotated[int | None, typer.Option(help="Image width (multiple of 8).")]
Height = Annotated[int | None, typer.Option(help="Image height (multiple of 8).")]
Steps = Annotated[int | None, typer.Option(help="Denoising steps.")]
Guidance = Annotated[float | None, typer.Option(help="Classifier-free guidance scale.")]
Grid = Annotated[int | None, typer.Option(help="Patch grid size G (G×G cells). Default 7.")]
MethodOpt = Annotated[str | None, typer.Option("--method", help="Localization method: grid, occlusion, multiscale, dense, phrases (docs/localization.md). Default TIPAI_METHOD.")]
Force = Annotated[bool, typer.Option("--force", help="Run again even if this exact batch was submitted before.")]
Wait = Annotated[bool, typer.Option("--wait", help="Show progress until the job finishes, then a summary.")]


def show_progress(job_id: str, timeout_s: float | None = None) -> JobProgress:
    """Live bars per stage until the job finishes; warns when no worker is consuming the queues."""
    from tipai_queue.workers_alive import missing_queues

    started = time.monotonic()
    last_change, last_seen, warned = started, None, False
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bars:
        state = job_progress(job_id)
        stages = {
            name: bars.add_task(name, total=total)
            for name, total in (
                ("generated", state.n_images),
                ("scored", state.n_images),
                ("heatmaps", state.n_images),
                ("pairs", state.n_prompts),
            )
        }
        while True:
            state = job_progress(job_id)
            for name in ("generated", "scored", "heatmaps"):
                bars.update(stages[name], completed=getattr(state, name))
            bars.update(stages["pairs"], completed=state.pairs, total=max(state.pairable, state.pairs) or 1)
            if state.finished:
                return state
            snapshot = (state.generated, state.scored, state.heatmaps, state.pairs, state.failed)
            if snapshot != last_seen:
                last_seen, last_change = snapshot, time.monotonic()
            elif not warned and time.monotonic() - last_change > 15:
                missing = missing_queues()
                if missing:
                    bars.console.print(
                        f"[yellow]no worker is consuming queue(s) {', '.join(missing)}; "
                        "start them with `tipai up` (or `tipai worker QUEUE`). Waiting…[/]"
                    )
                warned = True
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise fail(f"job {job_id} did not finish within {timeout_s:.0f} s", EXIT_FAILED_IMAGES)
            time.sleep(0.5)


def table_console() -> Console:
    # Piped output has no width to fit; rich would assume 80 columns and fold every cell into several lines.
    return console if console.is_terminal else Console(width=400)


def print_summary(job_id: str, state: JobProgress) -> None:
    settings = get_settings()
    table = Table(title=f"job {job_id}", show_lines=False)
    for column in ("prompt", "text", "done", "failed", "best", "worst", "comparison"):
        table.add_column(column, overflow="fold")
    for row in prompt_summaries(job_id):
        table.add_row(
            row.prompt_id,
            row.prompt if len(row.prompt) <= 48 else row.prompt[:47] + "…",
            str(row.done),
            str(row.failed) if row.failed else "",
            *("" if value is None else f"P {value:.3g}" if row.by_faithfulness else f"cos {value:.4f}"
              for value in (row.best, row.worst)),
            Path(row.comparison_path).name if row.comparison_path else "",
        )
    table_console().print(table)
    if state.cancelled:
        undone = state.n_images - state.heatmaps - state.failed
        console.print(f"[yellow]job cancelled[/]; {undone} image(s) left undone", highlight=False)
    out = settings.artifact_root / job_id
    # Only folders that hold something: a job whose every image failed has none.
    folders = [f"{name + ':':<9} {out / name}" for name in ("images", "heatmaps", "pairs") if (out / name).is_dir()]
    lines = [f"{state.heatmaps}/{state.n_images} images done, {state.failed} failed, {state.pairs} pairs.", *folders,
             f"database: {db.redact(settings.database_url)} (tables jobs, prompts, images, scores, pairs)"]
    # soft_wrap: long paths and URLs stay whole on their lines, for copying, however narrow the output.
    console.print("\n".join(lines), highlight=False, soft_wrap=True)


def read_batch(batch_file: Path, seeds: str | None, **options) -> Batch:
    """The whole batch and its options, validated; bad input ends the command with every problem listed."""
    from tipai_queue.model_specs import missing_here

    settings = get_settings()
    try:
        batch = load_batch(batch_file, build_options(settings, seeds=parse_seeds(seeds), **options), settings)
    except BatchError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    for path in missing_here(batch.options.generator, batch.options.scorer):
        err.print(f"[yellow]warning:[/] {path} is not on this machine; the workers must have it", highlight=False)
    return batch


@app.command()
def submit(
    batch_file: Annotated[Path, typer.Argument(help="JSON list of prompts (or {id, prompt, category} objects), or a text file with one prompt per line.")],
    images: Images = None,
    seeds: Seeds = None,
    preset: PresetOpt = None,
    generator: GeneratorOpt = None,
    scorer: ScorerOpt = None,
    width: Width = None,
    height: Height = None,
    steps: Steps = None,
    guidance: Guidance = None,
    grid: Grid = None,
    method: MethodOpt = None,
    force: Force = False,
    wait: Wait = False,
) -> None:
    """Validate a whole batch, write its rows, and enqueue one chord per prompt."""
    settings = get_settings()
    batch = read_batch(
        batch_file, images=images, seeds=seeds, preset=preset, generator=generator, scorer=scorer,
        width=width, height=height, steps=steps, guidance=guidance, grid=grid, method=method,
    )
    try:
        result = submit_batch(batch, settings, force=force)
    except ServiceUnavailable as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    if result.created:
        console.print(f"job {result.job_id}: {result.n_prompts} prompts × {len(batch.options.seeds)} seeds = {result.n_images} images queued")
    elif read_database(job_progress, result.job_id).cancelled:
        console.print(f"job {result.job_id} was submitted before with the same prompts and settings, and cancelled; "
                      "--force runs it again as a new job", highlight=False)
    else:
        console.print(f"job {result.job_id} was submitted before with the same prompts and settings; reusing it (--force to run again)")
    console.print(f"job_id={result.job_id}", highlight=False)
    if wait:
        finish(result.job_id)


def finish(job_id: str, timeout_s: float | None = None) -> None:
    state = show_progress(job_id, timeout_s)
    print_summary(job_id, state)
    if state.failed:
        raise fail(f"{state.failed} image(s) failed; `tipai status {job_id} --errors` shows why", EXIT_FAILED_IMAGES)


@app.command()
def status(
    job_id: str,
    wait: Wait = False,
    errors: Annotated[bool, typer.Option("--errors", help="List failed images and why.")] = False,
) -> None:
    """Progress and summary of a job submitted earlier."""
    state = read_database(job_progress, job_id)
    if state is None:
        raise fail(f"no job {job_id!r}", EXIT_BAD_INPUT)
    if wait:
        finish(job_id)
        return
    print_summary(job_id, state)
    if errors:
        from tipai_queue.progress import failed_images

        for image_id, message in failed_images(job_id):
            console.print(f"{image_id}: {message}", highlight=False)


@app.command()
def cancel(job_id: str) -> None:
    """Stop a job: no image of it starts from now on, and its queued messages are taken off the broker."""
    from tipai_queue.cancel import NoSuchJob, cancel_job

    try:
        with servers_answering():
            result = cancel_job(job_id, get_settings())
    except NoSuchJob:
        raise fail(f"no job {job_id!r}", EXIT_BAD_INPUT) from None
    if result.already:
        console.print(f"job {job_id} was already cancelled; {result.left_undone} image(s) left undone", highlight=False)
    else:
        console.print(
            f"job {job_id} cancelled: {result.left_undone} image(s) left undone, "
            f"{result.purged} queued message(s) removed; tasks already running finish their current step",
            highlight=False,
        )


@app.command()
def reconcile(
    stuck_after: Annotated[float | None, typer.Option(help="Seconds in a running state before an image counts as stuck. Default TIPAI_STUCK_AFTER_S.")] = None,
) -> None:
    """Enqueue jobs a dead submitter left, requeue stuck images, pair prompts a lost chord callback left unpaired."""
    from tipai_queue.reconcile import reconcile_once

    with servers_answering():
        report = reconcile_once(get_settings(), stuck_after)
    console.print(
        f"jobs enqueued: {report.jobs_enqueued}, images requeued: {report.images_requeued}, "
        f"prompts sent to pairing: {report.prompts_paired}"
    )


@app.command()
def explain(image_id: str) -> None:
    """Why an image's score is what it is: which region fails which phrase, and what the scorer sees instead."""
    from tipai_queue.progress import PROMPT_CUT, nothing_found, score_of

    score = read_database(score_of, image_id)
    if score is None:
        raise fail(f"image {image_id!r} has no score yet (unknown, still running, or failed)", EXIT_BAD_INPUT)
    console.print(f"{image_id}: {score.prompt!r}", highlight=False)
    faithful = "" if score.log_faithfulness is None else f"P(as prompted) {math.exp(score.log_faithfulness):.3g}, "
    console.print(f"{faithful}cosine {score.global_score:.3f} (score {score.global_score_01:.2f}); patch map: "
                  f"{score.method}, {score.grid}×{score.grid}", highlight=False)
    if score.explanation is None:
        console.print("no explanation stored: this image was scored before explanations existed")
    elif not score.explanation:
        console.print(f"the scorer sees {nothing_found(score.log_faithfulness is not None)}", highlight=False)
    if score.truncated:
        console.print(PROMPT_CUT)
    for finding in score.explanation or []:
        console.print(f"- {finding['text']}", highlight=False)


@app.command()
def migrate() -> None:
    """Create or upgrade the database tables (Alembic)."""
    from tipai_queue.stack import migrate as run_migrations

    run_migrations()
    console.print("database is at the latest schema")


@app.command()
def jobs(limit: Annotated[int, typer.Option(min=1, help="How many recent jobs.")] = 20) -> None:
    """Recent jobs and how far each has got."""
    from tipai_queue.progress import recent_jobs

    rows = read_database(recent_jobs, limit)
    table = Table()
    table.add_column("job", no_wrap=True)  # ids are what the other commands take: never cut one short
    for column in ("created", "preset", "prompts", "images", "done", "failed", "pairs", "state", "source"):
        table.add_column(column)
    for job, state in rows:
        table.add_row(
            job.job_id, f"{job.created_at:%Y-%m-%d %H:%M}", job.preset, str(job.n_prompts), str(job.n_images),
            str(state.heatmaps), str(state.failed), str(state.pairs),
            "cancelled" if state.cancelled else "finished" if state.finished else "running", job.source or "",
        )
    table_console().print(table)


@app.command()
def worker(
    queue: Annotated[str, typer.Argument(help="gpu (generate, score) or cpu (heatmap, pair, reconcile).")],
    gpu: Annotated[int | None, typer.Option(help="GPU index this worker owns (sets CUDA_VISIBLE_DEVICES).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Processes; gpu workers always use 1.")] = None,
    beat: Annotated[bool, typer.Option(help="Also run the periodic reconcile (exactly one worker should).")] = False,
) -> None:
    """Run a Celery worker for one queue, named so Flower tells GPU from CPU workers (gpu0@host, cpu@host)."""
    import os

    from tipai_queue import stack

    settings = get_settings()
    if queue == "gpu":
        name = "gen0" if gpu is None else f"gpu{gpu}"
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        cmd = stack.worker_command("gpu", f"{name}@%h", 1)
    elif queue == "cpu":
        schedule = settings.state_dir / "beat-schedule" if beat else None
        cmd = stack.worker_command("cpu", "cpu@%h", concurrency or settings.worker_concurrency_cpu, schedule)
    else:
        raise fail(f"unknown queue {queue!r}; use gpu or cpu", EXIT_BAD_INPUT)
    os.execv(cmd[0], cmd)


def start_stack(flower: bool, demo: bool = False):
    from tipai_queue import stack

    settings = get_settings()
    # The generation workers start here, and one would refuse a GPU this machine lacks (workers/tasks.py) only after
    # the services were up and the batch queued for nobody.
    from workers.devices import check_explicit_device

    try:
        check_explicit_device(settings.device)
    except ValueError as exc:
        raise fail(f"TIPAI_DEVICE={settings.device}: {exc}", EXIT_BAD_INPUT) from None
    try:
        running, credentials = stack.start(settings, flower=flower, demo=demo)
    except RuntimeError as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    console.print(f"services: {', '.join(running.services_started) or 'already running'}; "
                  f"workers: {', '.join(running.workers) or 'already running'}; "
                  f"logs in {settings.state_dir / 'logs'}", highlight=False)
    if running.adopted:
        console.print(f"left running by an earlier `tipai up`: {', '.join(running.adopted)} (`tipai down` stops them)",
                      highlight=False)
    if credentials:
        console.print(f"Flower: http://{settings.flower_host}:{settings.flower_port}  "
                      f"(user {credentials[0]}, password in {settings.state_dir / 'flower-password'} "
                      "unless TIPAI_FLOWER_PASSWORD is set)", highlight=False, soft_wrap=True)
    if demo:
        console.print(f"Demo: http://{settings.demo_host}:{settings.demo_port}", highlight=False)
    return running


@app.command()
def up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start and return; stop later with `tipai down`.")] = False,
    flower: Annotated[bool, typer.Option(help="Start Flower too.")] = True,
    demo: Annotated[bool, typer.Option(help="Start the demo page too.")] = True,
) -> None:
    """Start Redis and Postgres (local URLs), migrate, and start the workers, Flower and the demo page. Ctrl-C stops
    it all."""
    running = start_stack(flower, demo)
    if detach:
        return
    if not running.processes and not running.services_started:
        console.print("the whole stack already runs; `tipai down` stops it")
        return
    console.print("running; Ctrl-C to stop")
    try:
        while all(p.poll() is None for p in running.processes.values()):
            time.sleep(1)
        dead = [n for n, p in running.processes.items() if p.poll() is not None]
        err.print(f"[red]{', '.join(dead)} exited; see the logs. Stopping.[/]")
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
        console.print("stopped")


@app.command()
def demo() -> None:
    """Serve the demo page in the foreground (TIPAI_DEMO_HOST:TIPAI_DEMO_PORT); the queue must be running."""
    from frontend.app import main

    main()


@app.command()
def down() -> None:
    """Stop what `tipai up --detach` started, and the local Redis and Postgres."""
    from tipai_queue import stack

    stopped = stack.down(get_settings())
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def run(
    batch_file: Annotated[Path, typer.Argument(help="The batch to run.")] = Path("data/prompts.json"),
    images: Images = None,
    seeds: Seeds = None,
    preset: PresetOpt = None,
    generator: GeneratorOpt = None,
    scorer: ScorerOpt = None,
    width: Width = None,
    height: Height = None,
    steps: Steps = None,
    guidance: Guidance = None,
    grid: Grid = None,
    method: MethodOpt = None,
    force: Force = False,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the stack running afterwards.")] = False,
) -> None:
    """The main job in one command: start the stack, submit the batch, show progress and where results are."""
    settings = get_settings()
    # Validated before anything starts: bad input costs nothing.
    batch = read_batch(
        batch_file, images=images, seeds=seeds, preset=preset, generator=generator, scorer=scorer,
        width=width, height=height, steps=steps, guidance=guidance, grid=grid, method=method,
    )
    running = start_stack(flower=keep)
    started = time.monotonic()
    try:
        result = submit_batch(batch, settings, force=force)
        console.print(f"job {result.job_id}: {result.n_images} images "
                      f"({'new' if result.created else 'submitted before, reusing'})")
        finish(result.job_id)
        console.print(f"wall time: {time.monotonic() - started:.1f} s", highlight=False)
    except ServiceUnavailable as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    finally:
        if keep:
            console.print("stack left running; `tipai down` stops it")
        else:
            running.stop()


if __name__ == "__main__":
    app()
