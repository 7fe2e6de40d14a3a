"""Hostile input through the CLI (tests/test_bad_input.py has the everyday mistakes): every problem named, a
non-zero exit, and no row, message or file; strange but legitimate text goes through untouched. The properties
are checked in-process with hypothesis, the CLI with one run per kind of input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st

from tests.helpers import job_id_from, tipai
from tests.test_bad_input import nothing_changes, write  # noqa: F401 (a fixture)
from tipai_queue import artifacts
from tipai_queue.batch import ID_PATTERN, BatchError, validate_entries
from tipai_queue.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

LIMITS = Settings(_env_file=None)
CLI_RSS_LIMIT_MB = 400  # measured about 140 MB for a rejected 100 000-prompt file; the bound catches a blow-up
PEAK_RSS = (  # run argv[1:] and print its exit status and its own peak RSS in KiB (wait4 on that one child)
    "import os, sys; pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ); "
    "_, status, usage = os.wait4(pid, 0); print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)"
)

HOSTILE = [
    {"id": "empty", "prompt": ""},
    {"id": "blank", "prompt": " \t\n "},
    {"id": "huge", "prompt": "a" * 10_000},
    {"id": "bell", "prompt": "a dog\x07"},
    {"id": "nul", "prompt": "a dog\x00; rm -rf /"},
    {"id": "escape", "prompt": "\x1b[2J\x1b[31mred"},
    {"id": "bidi", "prompt": "file\u202egnp.exe"},
    {"id": "a/b", "prompt": "a dog"},
    {"id": "..", "prompt": "a dog"},
    {"id": "../../etc/passwd", "prompt": "a dog"},
    {"id": "/abs", "prompt": "a dog"},
    {"id": "$(reboot)", "prompt": "a dog"},
    {"id": "a;ls", "prompt": "a dog"},
    {"id": "`id`", "prompt": "a dog"},
    {"id": "newline\n", "prompt": "a dog"},
    {"id": 7, "prompt": "a dog"},
    {"id": "ok", "prompt": "a dog", "category": "../x"},
]
EXPECTED = [
    "prompt 1 (empty): prompt is empty",
    "prompt 2 (blank): prompt is empty",
    "prompt 2 (blank): prompt contains control characters (U+0009, U+000A)",
    "prompt 3 (huge): prompt has 10000 characters; the limit is 2000",
    "prompt 4 (bell): prompt contains control characters (U+0007)",
    "prompt 5 (nul): prompt contains control characters (U+0000)",
    "prompt 6 (escape): prompt contains control characters (U+001B)",
    "prompt 7 (bidi): prompt contains control characters (U+202E)",
    "prompt 8: id 'a/b' is not allowed",
    "prompt 9: id '..' is not allowed",
    "prompt 10: id '../../etc/passwd' is not allowed",
    "prompt 11: id '/abs' is not allowed",
    "prompt 12: id '$(reboot)' is not allowed",
    "prompt 13: id 'a;ls' is not allowed",
    "prompt 14: id '`id`' is not allowed",
    "prompt 15: id 'newline\\n' is not allowed",
    "prompt 16: id 7 is not allowed",
    "prompt 17: category '../x' is not allowed",
]


def rejected(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


def test_every_hostile_prompt_and_id_is_named(tmp_path, nothing_changes):  # noqa: F811
    message = rejected(tipai("submit", str(write(tmp_path, HOSTILE))))
    for line in EXPECTED:
        assert line in message, line
    assert "prompt 18" not in message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"prompt": "a dog"}, 'a JSON object must have a "prompts" list'),
        ({"prompts": "a dog"}, "expected a JSON list of prompts"),
        (42, "expected a JSON list of prompts"),
        (None, "expected a JSON list of prompts"),
        ([], "the batch holds no prompts"),
        ([["a dog"]], "prompt 1: expected a string or an object, got list"),
        ([{"prompt": {"text": "a dog"}}], "prompt 1 (p01): prompt must be a string, got dict"),
        ([{"id": "a"}], "prompt 1: prompt must be a string, got NoneType"),
        ([{"prompt": "a dog", "seed": 3}], "prompt 1: unknown field(s) seed"),
        ('[{"prompt": "a"}] trailing', "invalid JSON: Extra data"),
    ],
)
def test_json_of_the_wrong_shape(tmp_path, nothing_changes, content, message):  # noqa: F811
    path = write(tmp_path, content if isinstance(content, str) else json.dumps(content))
    assert message in rejected(tipai("submit", str(path)))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("batch.txt", "a café\n".encode("latin-1"), "not UTF-8 text (invalid continuation byte at byte 5)"),
        ("batch.json", json.dumps(["a dog"]).encode("utf-16"), "not UTF-8 text"),
        ("batch.txt", b"a dog\n\x00\x00\x00", "prompt 2 (p02): prompt contains control characters (U+0000)"),
    ],
)
def test_files_that_are_not_utf8_text(tmp_path, nothing_changes, name, content, message):  # noqa: F811
    assert message in rejected(tipai("submit", str(write(tmp_path, content, name))))


@pytest.mark.parametrize(
    ("args", "messages"),
    [
        (
            ("--width", "100000", "--height", "12", "--steps", "1000000000", "--guidance", "1e308", "--grid", "0"),
            ["width must be a multiple of 8 from 64 to 2048, got 100000", "height must be a multiple of 8",
             "steps must be between 1 and 500", "guidance must be between 0 and 50", "grid must be between 1 and 32"],
        ),
        (("--guidance", "nan"), ["guidance must be between 0 and 50, got nan"]),
        (("--images", "1000000000000"), ["images per prompt must be between 1 and 64"]),
        (("--seeds", "0-99999999999"), ["range 0-99999999999 holds 100000000000 seeds; at most 64"]),
        (("--seeds", ",".join(map(str, range(65)))), ["65 seeds given; at most 64 images per prompt"]),
        (("--seeds", "4294967296"), ["seed 4294967296 must be a whole number from 0 to 4294967295"]),
        (("--seeds", "1,1"), ["seeds must not repeat"]),
    ],
)
def test_absurd_sizes_steps_and_seeds(tmp_path, nothing_changes, args, messages):  # noqa: F811
    message = rejected(tipai("submit", str(write(tmp_path, ["a dog"])), *args))
    for expected in messages:
        assert expected in message


@pytest.mark.parametrize("suffix", [".json", ".txt"])
def test_a_100000_prompt_file_is_refused_in_bounded_memory(tmp_path, nothing_changes, suffix):  # noqa: F811
    prompts = [f"prompt number {i}: a red cube on a blue sphere" for i in range(100_000)]
    path = write(tmp_path, json.dumps(prompts) if suffix == ".json" else "\n".join(prompts), f"big{suffix}")
    # Spawned through a small wrapper: a child exec'd straight from this (large) process would report this
    # process's RSS as its own peak, since Linux carries the pre-exec high-water mark over.
    with open(tmp_path / "stderr", "w+") as err:
        wrapper = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "tipai_queue.cli", "submit", str(path)],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=PROJECT_ROOT, timeout=120,
        )
        err.seek(0)
        stderr = err.read()
    returncode, peak_kb = map(int, wrapper.stdout.split())
    peak_mb = peak_kb / 1024
    assert returncode == 2, stderr
    assert f"the batch holds 100000 prompts; the limit is {LIMITS.max_prompts}" in " ".join(stderr.split())
    assert peak_mb < CLI_RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"
    print(f"\n{suffix} 100 000 prompts ({path.stat().st_size / 1e6:.1f} MB): refused, CLI peak RSS {peak_mb:.0f} MB")


@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
@hypothesis_settings(max_examples=300)
def test_validated_prompts_are_clean_or_refused_with_a_reason(texts):
    try:
        specs = validate_entries(texts, LIMITS)
    except BatchError as exc:
        assert exc.errors and all(error.startswith("prompt ") for error in exc.errors)
        return
    for spec, text in zip(specs, texts, strict=True):
        assert spec.prompt == text.strip() and spec.prompt
        assert not any(ch < " " or ch == "\x7f" for ch in spec.prompt)


@given(st.text(max_size=70))
@hypothesis_settings(max_examples=300)
def test_an_id_is_accepted_only_if_it_is_a_safe_file_name(tmp_path_factory, prompt_id):
    root = tmp_path_factory.getbasetemp() / "artifacts"
    try:
        [spec] = validate_entries([{"id": prompt_id, "prompt": "a dog"}], LIMITS)
    except BatchError:
        assert not ID_PATTERN.fullmatch(prompt_id)
        return
    path = artifacts.image_path(root, "j0123456789ab", spec.prompt_id, 0)
    assert path.parent == root.resolve() / "j0123456789ab" / "images"


def test_emoji_and_right_to_left_prompts_go_through_untouched(workers, tmp_path):
    from sqlalchemy import select

    from tipai_queue import db
    from tipai_queue.models import Image, Prompt

    texts = ["🐶 a dog wearing a 🎩 hat 👨‍👩‍👧", "كلب يجلس على كرسي", "כלב על כיסא, and a cat"]
    result = tipai("submit", str(write(tmp_path, texts)), "--images", "2", "--force", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    job = job_id_from(result.stdout)
    with db.session_scope() as session:
        assert session.scalars(select(Prompt.prompt).where(Prompt.job_id == job).order_by(Prompt.position)).all() == texts
        statuses = session.scalars(select(Image.status).where(Image.job_id == job)).all()
    assert statuses == ["done"] * 6
