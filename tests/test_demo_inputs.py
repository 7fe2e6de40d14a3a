"""Hostile input through the demo's HTTP API (what a script, not the browser, can send): every kind of bad prompt,
seed list, count or option gets an error that says what is wrong, and no row, queued message or file appears.
Strange but legitimate text goes through untouched. The page's browser test covers the file route."""

from __future__ import annotations

import html

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from sqlalchemy import select

from tests.helpers import counts
from tests.test_bad_input import nothing_changes  # noqa: F401 (a fixture)
from tests.test_demo_browser import start_demo, wait_until_serving
from tipai_queue.settings import Settings

pytestmark = pytest.mark.integration

LIMITS = Settings(_env_file=None)
DEFAULTS = {"images": 4, "seeds": "", "preset": "tiny", "grid": 7, "method": LIMITS.method}


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory):
    return tmp_path_factory.mktemp("demo-inputs") / "demo.log"


@pytest.fixture(scope="module")
def client(workers, demo_log):
    proc, url = start_demo({}, demo_log)
    try:
        wait_until_serving(proc, url, demo_log)
        yield Client(url, verbose=False)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def generate(client: Client, prompt: str | None, **options) -> tuple:
    values = DEFAULTS | options
    return client.predict(
        prompt, values["images"], values["seeds"], values["preset"], values["grid"], values["method"],
        api_name="/generate",
    )


def test_refused_input_is_one_line_in_the_log(client, demo_log, nothing_changes):  # noqa: F811
    logged_before = demo_log.stat().st_size
    with pytest.raises(AppError):
        generate(client, "a dog\x07")
    with demo_log.open() as log:
        log.seek(logged_before)
        added = log.read()
    assert "refused a submission: prompt contains control characters (U+0007)" in added
    assert "Traceback" not in added


@pytest.mark.parametrize(
    ("prompt", "options", "message"),
    [
        ("", {}, "Cannot submit: prompt is empty"),
        (None, {}, "Cannot submit: prompt is empty"),
        ("   ", {}, "Cannot submit: prompt is empty"),
        (" \t\n ", {}, "prompt contains control characters (U+0009, U+000A)"),
        ("a" * 10_000, {}, f"prompt has 10000 characters; the limit is {LIMITS.max_prompt_chars}"),
        ("a dog\x07", {}, "prompt contains control characters (U+0007)"),
        ("a dog\x00; rm -rf /", {}, "prompt contains control characters (U+0000)"),
        ("file\u202egnp.exe", {}, "prompt contains control characters (U+202E)"),
        ("a dog", {"seeds": "0-99999999999"}, "range 0-99999999999 holds 100000000000 seeds; at most 64"),
        ("a dog", {"seeds": "-1"}, "seed -1 must be a whole number from 0 to 4294967295"),
        ("a dog", {"seeds": "4294967296"}, "seed 4294967296 must be a whole number from 0 to 4294967295"),
        ("a dog", {"seeds": "1.5"}, "Cannot submit: seeds: '1.5' is not a whole number or a range like 0-3"),
        ("a dog", {"seeds": "1,1"}, "seeds must not repeat"),
        ("a dog", {"images": 0}, "Value 0 is less than minimum value 2"),
        ("a dog", {"images": 10**12}, "greater than maximum value 16"),
        ("a dog", {"images": 2.5}, "Cannot submit: images per prompt must be a whole number, got 2.5"),
        ("a dog", {"images": None}, "Expected a `float`, but the value passed to the event handler was: None"),
        ("a dog", {"grid": 0}, "Value 0 is less than minimum value 2"),
        ("a dog", {"grid": 6.5}, "Cannot submit: grid must be a whole number, got 6.5"),
        ("a dog", {"preset": "nope"}, "Value: nope is not in the list of choices"),
        ("a dog", {"method": "../../etc/passwd"}, "Value: ../../etc/passwd is not in the list of choices"),
    ],
    ids=[
        "empty", "none", "blank", "whitespace-controls", "10000-chars", "bell", "nul", "bidi", "huge-seed-range",
        "negative-seed", "seed-too-big", "fractional-seed", "repeated-seed", "zero-images", "absurd-images",
        "fractional-images", "no-images", "zero-grid", "fractional-grid", "unknown-preset", "unknown-method",
    ],
)
def test_bad_input_gets_an_error_and_changes_nothing(client, nothing_changes, prompt, options, message):  # noqa: F811
    with pytest.raises(AppError) as refused:
        generate(client, prompt, **options)
    assert message in str(refused.value)


@pytest.mark.parametrize("prompt", ["a 🐈 on a mat", "قطة على حصيرة"])
def test_emoji_and_right_to_left_prompts_make_a_job(client, prompt):
    from tipai_queue import db
    from tipai_queue.models import Job, Prompt

    before = counts()
    # One seed keeps it short; with a single image the job ends without a pair, and the page says why.
    status = generate(client, prompt, seeds="3")[0]
    assert "a pair needs two images, and this prompt asked for one" in status
    assert f"for <i>{html.escape(prompt)}</i>" in status  # the results name their prompt
    job_id = status.split("<b>job ", 1)[1].split("</b>", 1)[0]
    assert counts(job_id) == {"jobs": 1, "prompts": 1, "images": 1, "scores": 1, "pairs": 0}
    assert counts()["jobs"] == before["jobs"] + 1
    with db.session_scope() as session:
        assert session.scalars(select(Prompt.prompt).where(Prompt.job_id == job_id)).one() == prompt
        assert session.get(Job, job_id).source == "demo"
