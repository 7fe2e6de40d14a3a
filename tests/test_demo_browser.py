"""The demo page in a real headless Chromium, against real workers: two users generate at once, the CLI's batches
show under Browse, and bad input, a missing worker and a failing worker each say so in the page."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.helpers import counts, job_id_from, tipai
from tipai_queue import services

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# No sandbox: tests may run as root. The rest keeps Chromium from calling home while it runs.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT_MS = 120_000


def start_demo(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = services.free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "frontend"], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **env, "TIPAI_DEMO_HOST": "127.0.0.1", "TIPAI_DEMO_PORT": str(port),
                 "GRADIO_ANALYTICS_ENABLED": "False"},
        )
    return proc, f"http://127.0.0.1:{port}/"


def wait_until_serving(proc: subprocess.Popen, url: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"demo exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"demo did not answer at {url}: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def demos(workers, stack_services, tmp_path_factory):
    """The demo on the test queue, and a second one whose broker is a fresh Redis that no worker listens on."""
    logs = tmp_path_factory.mktemp("demo-logs")
    lonely_state = Path(tempfile.mkdtemp(prefix="tipai-lonely-", dir="/var/tmp"))
    lonely_port = services.free_port()
    services.start_redis(lonely_state, lonely_port)
    lonely_env = {
        "TIPAI_BROKER_URL": f"redis://127.0.0.1:{lonely_port}/0",
        "TIPAI_RESULT_BACKEND": f"redis://127.0.0.1:{lonely_port}/1",
    }
    # Started together: each takes seconds to import Gradio.
    main, main_url = start_demo({}, logs / "demo.log")
    lonely, lonely_url = start_demo(lonely_env, logs / "lonely.log")
    try:
        wait_until_serving(main, main_url, logs / "demo.log")
        wait_until_serving(lonely, lonely_url, logs / "lonely.log")
        yield {"url": main_url, "pid": main.pid, "lonely_url": lonely_url, "lonely_broker": lonely_env["TIPAI_BROKER_URL"]}
    finally:
        for proc in (main, lonely):
            proc.terminate()
            proc.wait(timeout=20)
        services.stop_redis(lonely_state)
        shutil.rmtree(lonely_state, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def cli_jobs(workers, tmp_path_factory) -> dict[str, str]:
    """A batch the CLI ran, and one whose generator does not exist, so every image fails in the worker."""
    folder = tmp_path_factory.mktemp("cli-batches")
    good = folder / "kites.json"
    good.write_text(json.dumps([{"id": "kite", "prompt": "a yellow kite above green hills", "category": "browse_check"}]))
    bad = folder / "broken.json"
    bad.write_text(json.dumps([{"id": "owl", "prompt": "an owl that never gets drawn"}]))
    ok = tipai("submit", str(good), "--images", "2", "--wait")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tipai("submit", str(bad), "--images", "2", "--generator", "/nonexistent", "--wait")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    return {"good": job_id_from(ok.stdout), "broken": job_id_from(broken.stdout)}


def generate(page, url: str, prompt: str, seeds: str = "") -> None:
    page.goto(url)
    page.get_by_label("Prompt", exact=True).fill(prompt)
    if seeds:
        page.get_by_text("Options").click()
        page.get_by_label("Seeds", exact=False).fill(seeds)
    page.locator("#generate").click()


def shown_job(page) -> str:
    return page.locator("#status b").first.inner_text().removeprefix("job ").strip()


def test_two_users_generate_and_see_best_worst_and_patch_analysis(demos, browser, cli_jobs, stack_services):
    from tipai_queue import db
    from tipai_queue.models import Pair, Score

    pages = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(2)]
    prompts = ["a red car on the beach", "a blue bird on a wire"]
    # The second user asks for two images through the options, which keeps the shared CPU worker's queue short.
    for page, prompt, seeds in zip(pages, prompts, ("", "7,9")):
        generate(page, demos["url"], prompt, seeds)
    for page, count in zip(pages, (4, 2)):
        page.locator("#images img").nth(count - 1).wait_for(timeout=WAIT_MS)
        page.locator("#chosen-heatmap img").wait_for(timeout=WAIT_MS)
        page.locator("#rejected-heatmap img").wait_for(timeout=WAIT_MS)
        page.locator("#analysis").get_by_text("Weakest region:").wait_for(timeout=WAIT_MS)
        page.locator("#status").get_by_text("finished in").wait_for(timeout=WAIT_MS)
    jobs = [shown_job(page) for page in pages]
    assert jobs[0] != jobs[1]  # each user follows their own job
    assert pages[1].locator("#images").get_by_text("seed 9").is_visible()

    car = pages[0]
    assert car.locator("#images img").count() == 4
    with db.session_scope() as session:
        pair = session.scalars(select(Pair).where(Pair.job_id == jobs[0])).one()
    assert pair.prompt == prompts[0]
    with db.session_scope() as session:
        chosen, rejected = session.get(Score, pair.chosen_img), session.get(Score, pair.rejected_img)
    # Pairs are ranked by the faithfulness ("a red car" has colour alternatives), and the titles show it first.
    assert (pair.c_score, pair.r_score) == (chosen.log_faithfulness, rejected.log_faithfulness)
    for side, label, score in (("#chosen", "CHOSEN", chosen), ("#rejected", "REJECTED", rejected)):
        title = f"{label} (P(as prompted) {math.exp(score.log_faithfulness):.3g} · cosine {score.global_score:.4f})"
        assert car.locator(side).get_by_text(title).is_visible()
    assert car.locator("#rejected").get_by_text(pair.rejected_img).is_visible()
    assert car.locator("#grid td").count() == 49
    analysis = car.locator("#analysis").inner_text()
    assert "below this image's mean" in analysis
    assert any(word in analysis for word in ("left", "right", "centre", "top", "bottom"))
    ARTIFACTS.mkdir(exist_ok=True)
    car.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)

    # The page shows the workers' files from the artifact root, and nothing else from this machine.
    src = car.locator("#rejected-heatmap img").get_attribute("src")
    assert urllib.request.urlopen(urllib.parse.urljoin(demos["url"], src), timeout=5).status == 200
    outside = stack_services.state_dir / "not-for-the-page.txt"
    outside.write_text("secret")
    for path in (outside, Path("/etc/passwd")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{demos['url']}gradio_api/file={path}", timeout=5)
        assert refused.value.code == 403

    # The demo process submitted and showed a whole job without loading torch.
    assert "libtorch" not in Path(f"/proc/{demos['pid']}/maps").read_text()

    car.get_by_role("tab", name="Browse").click()
    car.get_by_label("Prompt contains").fill("yellow kite")
    car.get_by_label("Prompt contains").press("Enter")
    car.locator("#browse-table").get_by_text("a yellow kite above green hills").filter(visible=True).first.click()
    car.locator("#comparison img").wait_for(timeout=30_000)
    assert car.locator("#detail-status").get_by_text(f"job {cli_jobs['good']}").is_visible()
    car.screenshot(path=str(ARTIFACTS / "demo-browse.png"), full_page=True)
    for page in pages:
        page.context.close()


def test_a_press_while_a_job_is_followed_runs_next_instead_of_being_dropped(demos, page):
    before = counts()["jobs"]
    generate(page, demos["url"], "a red ball on the grass", seeds="0,1")
    status = page.locator("#status")
    status.get_by_text("a red ball on the grass").wait_for(timeout=15_000)
    page.get_by_label("Prompt", exact=True).fill("a blue box on the sand")
    page.locator("#generate").click()
    # Followed to its end, so that no later test sees its rows still arriving.
    status.filter(has_text="a blue box on the sand").filter(has_text="finished in").wait_for(timeout=120_000)
    assert counts()["jobs"] == before + 2


def test_empty_prompt_is_refused_in_the_page(demos, page):
    before = counts()
    generate(page, demos["url"], "   ")
    page.get_by_text("Cannot submit: prompt is empty").wait_for(timeout=15_000)
    assert counts() == before


def test_no_worker_listening_is_said_within_seconds(demos, page):
    import redis

    before = counts()
    started = time.monotonic()
    generate(page, demos["lonely_url"], "a lighthouse at night")
    page.get_by_text("No worker is listening on queue gpu and cpu").wait_for(timeout=15_000)
    assert time.monotonic() - started < 15
    assert counts() == before
    broker = redis.Redis.from_url(demos["lonely_broker"])
    assert broker.llen("gpu") == 0 and broker.llen("cpu") == 0


def test_worker_error_shows_with_the_image_id(demos, page, cli_jobs):
    page.goto(demos["url"])
    page.get_by_role("tab", name="Browse").click()
    page.get_by_label("Prompt contains").fill("never gets drawn")
    page.get_by_label("Prompt contains").press("Enter")
    page.locator("#browse-table").get_by_text("an owl that never gets drawn").filter(visible=True).first.click()
    status = page.locator("#detail-status")
    status.get_by_text("fewer than two images succeeded").wait_for(timeout=30_000)
    for seed in (0, 1):
        image_id = f"{cli_jobs['broken']}_owl_{seed}"
        box = status.locator(".tipai-error", has_text=image_id)
        assert box.is_visible()
        assert "generator '/nonexistent'" in box.inner_text()
