"""The demo page. Generate: one prompt goes through the same submit API as `tipai submit`, and the page follows the
job's rows in Postgres until the best and worst image and their heatmaps are there. Browse: every job already in
the database, the CLI's batches included. This process only reads rows and files; the workers do the model work."""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterator
from functools import partial

import gradio as gr
import pandas as pd

from frontend import queries, regions
from frontend.queries import ImageView, PairView
from tipai_queue.batch import BatchError, batch_from_prompts, build_options
from tipai_queue.cli import parse_seeds
from tipai_queue.models import ImageStatus
from tipai_queue.presets import PRESETS
from tipai_queue.progress import PROMPT_CUT, job_progress, nothing_found
from tipai_queue.settings import Settings, get_settings
from tipai_queue.submit import ServiceUnavailable, check_services, submit
from tipai_queue.workers_alive import missing_queues
from workers.heatmap import COLORMAP, cells_grid, normalise
from workers.localize import METHODS

log = logging.getLogger(__name__)

POLL_S = 0.5
# With no row changing for this long, ask the workers whether anyone is still consuming the queues.
QUIET_CHECK_S = 8.0
# A page stops following a job after this; the job itself runs on and shows up under Browse.
FOLLOW_LIMIT_S = 900.0

STAGE_WORDS = {
    ImageStatus.QUEUED: "queued",
    ImageStatus.GENERATING: "generating",
    ImageStatus.GENERATED: "generated, waiting to be scored",
    ImageStatus.SCORING: "scoring",
    ImageStatus.SCORED: "scored, waiting for its heatmap",
    ImageStatus.RENDERING: "drawing heatmap",
    ImageStatus.DONE: "done",
    ImageStatus.FAILED: "failed",
}
LEGEND = (
    "Heatmaps: **red** = the part of the picture that agrees least with the prompt, **green** = agrees most. "
    "Colours are scaled within each image, so compare the scores, not the colours; the dashed box marks the "
    "weakest cell."
)
CSS = """
.tipai-status table { border-collapse: collapse; font-size: 0.9em; margin-top: 0.4em; }
.tipai-status td, .tipai-status th { padding: 2px 10px; border-bottom: 1px solid var(--border-color-primary); text-align: left; }
.tipai-error { border: 1px solid #d33; background: #fdecec; color: #8a1111; padding: 8px 12px; border-radius: 6px; margin: 6px 0; }
.tipai-warning { border: 1px solid #d9a400; background: #fff7dc; color: #6b5200; padding: 8px 12px; border-radius: 6px; margin: 6px 0; }
.tipai-grid { overflow-x: auto; max-width: 100%; }  /* a 16×16 grid is wider than its column */
.tipai-grid table { border-collapse: collapse; font-size: 0.78em; font-variant-numeric: tabular-nums; }
.tipai-grid td, .tipai-grid th { padding: 3px 5px; text-align: center; border: 1px solid rgba(0,0,0,0.08); color: #111; }
.tipai-grid td.weak { outline: 2px dashed #000; outline-offset: -3px; font-weight: 700; }
.tipai-side h3 { margin: 0 0 4px 0; }
/* Generated images can be 64×64: enlarge them to the panel, keeping their pixels sharp. */
.tipai-pixels img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
"""


def _error_box(text: str, kind: str = "error") -> str:
    return f'<div class="tipai-{kind}">{text}</div>'


def _clean_batch_errors(exc: BatchError) -> str:
    # The page submits one prompt, so the batch's "prompt 1 (p01):" prefix only gets in the way, and it has a
    # Seeds box, not the CLI's --seeds option.
    return "; ".join(re.sub(r"^(prompt 1( \([^)]*\))?: |--)", "", error) for error in exc.errors)


def status_html(job_id: str, views: list[ImageView], paired: bool, note: str = "", prompt: str | None = None) -> str:
    counts = {
        "generated": sum(v.path is not None for v in views),
        "scored": sum(v.score is not None for v in views),
        "heatmaps": sum(v.heatmap_path is not None for v in views),
    }
    n = len(views)
    # The prompt box may already hold the next prompt: name the one these results belong to.
    head = (
        f"<b>job {html.escape(job_id)}</b>"
        + ("" if prompt is None else f" for <i>{html.escape(prompt)}</i>")
        + " · "
        + " · ".join(f"{count}/{n} {name}" for name, count in counts.items())
        + f" · pair: {'ready' if paired else 'waiting'}"
    )
    rows = "".join(
        f"<tr><td>{v.seed}</td><td>{STAGE_WORDS.get(v.status, v.status)}</td>"
        f"<td>{'' if v.score is None else f'{v.score:.4f}'}</td><td><code>{html.escape(v.image_id)}</code></td></tr>"
        for v in views
    )
    failures = "".join(
        _error_box(
            f"<b>Image <code>{html.escape(v.image_id)}</code> failed</b> in a worker: {html.escape(v.error or 'no reason recorded')}"
            "<br>Its tasks carry this image id; search for it in Flower to see the task and its traceback."
        )
        for v in views
        if v.status == ImageStatus.FAILED
    )
    return (
        f'<div class="tipai-status">{head}{note}{failures}'
        f"<table><tr><th>seed</th><th>stage</th><th>cosine</th><th>image id</th></tr>{rows}</table></div>"
    )


def no_pair_reason(views: list[ImageView]) -> str:
    if len(views) < 2:
        return "a pair needs two images, and this prompt asked for one"
    return "fewer than two images succeeded"


def gallery_items(views: list[ImageView]) -> list[tuple[str, str]]:
    return [
        (v.path, f"seed {v.seed} · " + ("scoring…" if v.score is None else score_text(v, short=True)))
        for v in views
        if v.path is not None
    ]


def grid_html(patch_scores: list[float], grid: int, weak: set[tuple[int, int]]) -> str:
    """The G×G map values as a table coloured like the heatmap; hover a cell for its name."""
    cells = cells_grid(patch_scores, grid)
    shades = normalise(cells)
    body = []
    for row in range(grid):
        tds = []
        for col in range(grid):
            r, g, b, _ = (round(255 * c) for c in COLORMAP(float(shades[row, col])))
            title = f"{regions.cell_name(row, col, grid)} (row {row + 1}, column {col + 1})"
            css = ' class="weak"' if (row, col) in weak else ""
            tds.append(
                f'<td{css} style="background: rgb({r},{g},{b})" title="{title}">{cells[row, col]:.3g}</td>'
            )
        body.append(f"<tr><th>{row + 1}</th>{''.join(tds)}</tr>")
    header = "".join(f"<th>{col + 1}</th>" for col in range(grid))
    return f'<div class="tipai-grid"><table><tr><th></th>{header}</tr>{"".join(body)}</table></div>'


def analysis_outputs(view: ImageView) -> tuple[str, str]:
    """(markdown, grid table) for one image's patch scores."""
    analysis = regions.analyse(view.patch_scores, view.grid)
    weak = {(cell.row, cell.col) for cell in analysis.weakest}
    described = regions.describe(analysis, view.method or "grid")
    return explanation_markdown(view) + described, grid_html(view.patch_scores, view.grid, weak)


def explanation_markdown(view: ImageView) -> str:
    """The findings in words, above the cell numbers: they say why, the cells only say where."""
    if view.explanation is None:
        return ""
    cut = f"*{PROMPT_CUT.capitalize()}.*\n\n" if view.truncated else ""
    if not view.explanation:
        return cut + f"**What the scorer sees:** {nothing_found(view.faithfulness is not None)}.\n\n"
    lines = "\n".join(f"- {html.escape(finding['text'], quote=False)}" for finding in view.explanation)
    return cut + f"**What the scorer sees instead** (patch map: {view.method}):\n\n{lines}\n\n"


def score_text(view: ImageView, short: bool = False) -> str:
    """Pairs are ranked by the faithfulness where the prompt has one, so it comes first."""
    cosine = f"cosine {view.score:.4f}"
    if view.faithfulness is None:
        return cosine
    return f"P {view.faithfulness:.3g}" if short else f"P(as prompted) {view.faithfulness:.3g} · {cosine}"


def side_title(label: str, view: ImageView) -> str:
    return f"### {label} ({score_text(view)})\nseed {view.seed} · `{view.image_id}`"


class GeneratePanel:
    """The Generate tab's output components, and what each shows for a job's current rows."""

    def __init__(self) -> None:
        self.status = gr.HTML(elem_id="status")
        self.gallery = gr.Gallery(
            label="Images", columns=4, height=300, object_fit="contain", elem_id="images", allow_preview=True
        )
        with gr.Column(visible=False, elem_id="result") as self.result:
            gr.Markdown("## Best vs worst")
            with gr.Row(equal_height=True):
                with gr.Column(elem_classes="tipai-side", elem_id="chosen"):
                    self.chosen_title = gr.Markdown()
                    with gr.Row():
                        self.chosen_image = gr.Image(
                            label="image", type="filepath", interactive=False, height=300, elem_classes="tipai-pixels"
                        )
                        # No label badge: it would sit on the figure's own title; the legend says what it is.
                        self.chosen_heatmap = gr.Image(
                            label="heatmap", show_label=False, type="filepath", interactive=False, height=300,
                            elem_id="chosen-heatmap",
                        )
                with gr.Column(elem_classes="tipai-side", elem_id="rejected"):
                    self.rejected_title = gr.Markdown()
                    with gr.Row():
                        self.rejected_image = gr.Image(
                            label="image", type="filepath", interactive=False, height=300, elem_classes="tipai-pixels"
                        )
                        self.rejected_heatmap = gr.Image(
                            label="heatmap", show_label=False, type="filepath", interactive=False, height=300,
                            elem_id="rejected-heatmap",
                        )
            gr.Markdown(LEGEND)
            gr.Markdown("## Patch analysis of the rejected image")
            with gr.Row():
                self.analysis = gr.Markdown(elem_id="analysis")
                self.grid = gr.HTML(elem_id="grid")

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [
            self.status, self.gallery, self.result, self.chosen_title, self.chosen_image, self.chosen_heatmap,
            self.rejected_title, self.rejected_image, self.rejected_heatmap, self.analysis, self.grid,
        ]

    def cleared(self, message: str) -> dict:
        return {self.status: message, self.gallery: [], self.result: gr.update(visible=False)}

    def values(self, job_id: str, prompt: str, views: list[ImageView], pair: PairView | None, note: str) -> dict:
        shown = {
            self.status: status_html(job_id, views, pair is not None, note, prompt), self.gallery: gallery_items(views)
        }
        if pair is not None:
            analysis, table = analysis_outputs(pair.rejected)
            shown |= {
                self.chosen_title: side_title("CHOSEN", pair.chosen),
                self.chosen_image: pair.chosen.path,
                self.chosen_heatmap: pair.chosen.heatmap_path,
                self.rejected_title: side_title("REJECTED", pair.rejected),
                self.rejected_image: pair.rejected.path,
                self.rejected_heatmap: pair.rejected.heatmap_path,
                self.analysis: analysis,
                self.grid: table,
            }
        return shown


def validated_batch(
    settings: Settings, prompt: str | None, images: float, seeds: str | None, preset: str, grid: float, method: str
):
    """The one-prompt batch the form describes; bad input is a gr.Error naming every problem."""
    seeds = (seeds or "").strip()  # an untouched textbox arrives as None
    try:
        # A slider's step is not enforced on what an API client sends; 2.5 would silently become 2 images.
        whole = {"grid": grid} | ({} if seeds else {"images per prompt": images})
        if fractional := [f"{name} must be a whole number, got {value}" for name, value in whole.items()
                          if not float(value).is_integer()]:
            raise BatchError(fractional)
        options = build_options(
            settings,
            preset=preset,
            images=None if seeds else int(images),
            seeds=parse_seeds(seeds) if seeds else None,
            grid=int(grid),
            method=method,
        )
        return batch_from_prompts([prompt or ""], options, settings, source="demo")
    except BatchError as exc:
        reason = _clean_batch_errors(exc)
        # Refused input is the user's to fix, not a fault of this server: one line in its log, no traceback.
        log.info("refused a submission: %s", reason)
        raise gr.Error(f"Cannot submit: {reason}", duration=None, print_exception=False) from None


def check_form(*form) -> None:
    """The page's first step: refused input raises here, where it marks no output component, so the previous
    job's results stay readable beside the message (`generate` checks again for API clients, who call it alone)."""
    validated_batch(get_settings(), *form)


def generate(
    panel: GeneratePanel, prompt: str | None, images: float, seeds: str | None, preset: str, grid: float, method: str
) -> Iterator[dict]:
    """Validate, submit, then stream the job's rows until it is finished (pair written, or nothing left to pair)."""
    settings = get_settings()
    batch = validated_batch(settings, prompt, images, seeds, preset, grid, method)
    try:
        check_services(settings)
        missing = missing_queues()
        if missing:
            log.warning("nothing submitted: no worker is listening on queue %s", " and ".join(missing))
            raise gr.Error(
                f"No worker is listening on queue {' and '.join(missing)}, so nothing was submitted. "
                "Start the workers with `tipai up` (or `tipai worker gpu` / `tipai worker cpu`) and try again.",
                title="No worker running",
                duration=None,
                print_exception=False,
            )
        # Each press is its own job, even for a prompt someone already ran: every user follows their own progress.
        submission = submit(batch, settings, force=True)
    except ServiceUnavailable as exc:
        log.warning("nothing submitted: %s", exc)
        raise gr.Error(str(exc), title="Queue unavailable", duration=None, print_exception=False) from None

    job_id, prompt_id = submission.job_id, batch.prompts[0].prompt_id
    sent: dict = {}
    yield panel.cleared(f"<b>job {job_id}</b> submitted: {submission.n_images} images queued")
    started = last_change = last_check = time.monotonic()
    note, snapshot = "", None
    while True:
        # The state first: rows only ever get added, so a finished state guarantees the reads after it see the pair
        # (read the other way round, a pair written in between showed as "finished without a pair").
        state = job_progress(job_id)
        views = queries.images(job_id)
        pair = queries.pair(job_id, prompt_id)
        now = time.monotonic()
        current = (tuple((v.status, v.score, v.path, v.heatmap_path) for v in views), pair is not None)
        if current != snapshot:
            snapshot, last_change, note = current, now, ""
        elif now - last_change > QUIET_CHECK_S and now - last_check > QUIET_CHECK_S:
            last_check = now
            missing = missing_queues()
            note = (
                _error_box(
                    f"No worker is listening on queue {' and '.join(missing)}: this job waits until one starts "
                    "(<code>tipai up</code>, or <code>tipai worker gpu</code> / <code>tipai worker cpu</code>).",
                    "warning",
                )
                if missing
                else ""
            )
        if state.finished:
            if pair is None:
                note += _error_box(f"The job finished without a best/worst pair: {no_pair_reason(views)}.")
            else:
                note += f"<br>finished in {now - started:.1f} s"
        elif now - started > FOLLOW_LIMIT_S:
            note += _error_box(
                f"Still running after {FOLLOW_LIMIT_S:.0f} s; the page stops following here. "
                f"The job goes on: find job {job_id} under Browse later.",
                "warning",
            )
        update = panel.values(job_id, batch.prompts[0].prompt, views, pair, note)
        if pair is not None and panel.result not in sent:
            update[panel.result] = gr.update(visible=True)
        changed = {component: value for component, value in update.items() if sent.get(component) != value}
        if changed:
            sent.update(changed)
            yield changed
        if state.finished or now - started > FOLLOW_LIMIT_S:
            return
        time.sleep(POLL_S)


# Browse tab -------------------------------------------------------------------------------------------------------

# The highest and lowest cosine among the prompt's images; the pair itself is ranked by faithfulness (open the row).
BROWSE_COLUMNS = [
    "job", "prompt id", "category", "prompt", "done", "failed", "max cosine", "min cosine", "pair", "source"
]
ALL = ""


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def browse_table(job_id: str, category: str, text: str) -> tuple[pd.DataFrame, dict]:
    rows = queries.prompt_rows(job_id or None, category or None, text)
    frame = pd.DataFrame(
        [
            [r.job_id, r.prompt_id, r.category or "", r.prompt, f"{r.done}/{r.n_images}", r.failed or "",
             _score(r.best), _score(r.worst), "yes" if r.paired else "", r.source or ""]
            for r in rows
        ],
        columns=BROWSE_COLUMNS,
    )
    choices = [(f"{r.job_id} / {r.prompt_id}: {r.prompt[:60]}", f"{r.job_id}/{r.prompt_id}") for r in rows]
    return frame, gr.Dropdown(choices=choices, value=None)


def browse_filters() -> tuple[dict, dict]:
    return (
        gr.Dropdown(choices=[("all jobs", ALL), *queries.job_choices()]),
        gr.Dropdown(choices=[("all categories", ALL), *((c, c) for c in queries.categories())]),
    )


def open_prompt(key: str | None) -> tuple[dict, str, list, dict, str | None, str, str]:
    """(detail shown?, status, images and heatmaps, pair shown?, comparison image, analysis, grid) for one prompt."""
    hidden = gr.update(visible=False)
    if not key:
        return hidden, "", [], hidden, None, "", ""
    job_id, prompt_id = key.split("/", 1)
    views = queries.images(job_id, prompt_id)
    shown = gr.update(visible=True)
    if not views:
        return shown, _error_box(f"No prompt {html.escape(key)} in the database."), [], hidden, None, "", ""
    pair = queries.pair(job_id, prompt_id)
    items = gallery_items(views) + [
        (v.heatmap_path, f"heatmap · seed {v.seed}") for v in views if v.heatmap_path is not None
    ]
    if pair is None:
        settled = all(v.status in ImageStatus.TERMINAL for v in views)
        note = _error_box(
            f"No best/worst pair: {no_pair_reason(views)}." if settled else "Still running; no pair yet.",
            "warning",
        )
        return shown, status_html(job_id, views, False, note), items, hidden, None, "", ""
    note = (
        f"<br><b>CHOSEN</b> seed {pair.chosen.seed} ({html.escape(score_text(pair.chosen))}) vs <b>REJECTED</b> "
        f"seed {pair.rejected.seed} ({html.escape(score_text(pair.rejected))}) over {pair.n_candidates} images"
    )
    analysis, table = analysis_outputs(pair.rejected)
    return shown, status_html(job_id, views, True, note), items, shown, pair.comparison_path, analysis, table


def build(settings: Settings) -> gr.Blocks:
    with gr.Blocks(title="TiPAI: where an image fails its prompt", analytics_enabled=False) as demo:
        gr.Markdown(
            "# TiPAI: where does an image fail its prompt?\n"
            "Type a prompt: the queue generates several images, scores each one and every patch of it against the "
            "prompt with CLIP, and shows the best and the worst with heatmaps. "
            f"Watch the workers in Flower at http://{settings.flower_host}:{settings.flower_port}."
        )
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                with gr.Row(equal_height=True):
                    prompt = gr.Textbox(
                        label="Prompt", placeholder="a red car on the beach", scale=5, elem_id="prompt",
                        max_length=settings.max_prompt_chars,
                    )
                    go = gr.Button("Generate", variant="primary", scale=1, elem_id="generate")
                with gr.Accordion("Options", open=False):
                    with gr.Row():
                        images = gr.Slider(2, 16, value=4, step=1, label="Images per prompt")
                        seeds = gr.Textbox(label="Seeds (optional, e.g. 0-3 or 5,9,11; overrides the count)")
                        preset = gr.Dropdown(
                            choices=[(f"{p.name}: {p.about}", p.name) for p in PRESETS.values()],
                            value=settings.preset,
                            label="Preset",
                        )
                        grid = gr.Slider(2, 16, value=settings.grid, step=1, label="Patch grid (G×G)")
                        method = gr.Dropdown(choices=list(METHODS), value=settings.method, label="Localization method")
                panel = GeneratePanel()
                inputs = [prompt, images, seeds, preset, grid, method]
                # One named endpoint for the button and Enter, so API clients (and the load benchmark) call /generate.
                # A press while a job is followed runs once that one is done, instead of being dropped unseen (the
                # default trigger mode, "once", ignores presses while the event is pending, and says nothing).
                gr.on(
                    [go.click, prompt.submit], check_form, inputs, None, api_name=False, trigger_mode="multiple"
                ).success(
                    partial(generate, panel), inputs, panel.outputs, api_name="generate", trigger_mode="always_last"
                )
            with gr.Tab("Browse", id="browse") as browse:
                with gr.Row():
                    job_filter = gr.Dropdown(label="Job", choices=[("all jobs", ALL)], value=ALL, scale=3)
                    category_filter = gr.Dropdown(label="Category", choices=[("all categories", ALL)], value=ALL)
                    text_filter = gr.Textbox(label="Prompt contains")
                    refresh = gr.Button("Refresh", scale=0)
                table = gr.Dataframe(
                    headers=BROWSE_COLUMNS, interactive=False, wrap=True, max_height=360, elem_id="browse-table"
                )
                chosen_key = gr.Dropdown(label="Open a prompt (or click its row)", choices=[], elem_id="open-prompt")
                with gr.Column(visible=False) as detail:
                    detail_status = gr.HTML(elem_id="detail-status")
                    detail_images = gr.Gallery(
                        label="Images and heatmaps", columns=8, height=220, object_fit="contain", elem_id="detail-images"
                    )
                    with gr.Row(visible=False) as detail_pair:
                        with gr.Column():
                            gr.Markdown("### Comparison as saved (chosen left, rejected right)")
                            comparison = gr.Image(
                                show_label=False, type="filepath", interactive=False, elem_id="comparison", height=560
                            )
                        with gr.Column():
                            gr.Markdown("### Patch analysis of the rejected image")
                            detail_analysis = gr.Markdown()
                            detail_grid = gr.HTML()

                filters = [job_filter, category_filter, text_filter]
                listing = [table, chosen_key]
                browse.select(browse_filters, None, [job_filter, category_filter]).then(browse_table, filters, listing)
                refresh.click(browse_filters, None, [job_filter, category_filter]).then(browse_table, filters, listing)
                for box in (job_filter, category_filter):
                    box.input(browse_table, filters, listing)
                text_filter.submit(browse_table, filters, listing)

                def pick_row(evt: gr.SelectData) -> str:
                    job_id, prompt_id = evt.row_value[0], evt.row_value[1]
                    return f"{job_id}/{prompt_id}"

                table.select(pick_row, None, chosen_key)
                chosen_key.change(
                    open_prompt,
                    chosen_key,
                    [detail, detail_status, detail_images, detail_pair, comparison, detail_analysis, detail_grid],
                )
    return demo


def auth_pair(settings: Settings) -> tuple[str, str] | None:
    if settings.demo_auth is None:
        return None
    user, _, password = settings.demo_auth.get_secret_value().partition(":")
    return user, password


def main() -> None:
    # Gradio and its HTTP clients log every request at INFO; only this module's own lines are wanted at that level.
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    settings = get_settings()
    settings.artifact_root.mkdir(parents=True, exist_ok=True)
    demo = build(settings)
    demo.queue(default_concurrency_limit=settings.demo_concurrency, max_size=10 * settings.demo_concurrency)
    demo.launch(
        server_name=settings.demo_host,
        server_port=settings.demo_port,
        auth=auth_pair(settings),
        # The page shows images the workers wrote; nothing else on this machine is served.
        allowed_paths=[str(settings.artifact_root)],
        show_error=True,
        ssr_mode=False,
        css=CSS,
        theme=gr.themes.Soft(),
    )
