"""Batch validation: the whole batch is checked, every problem reported, before anything is written."""

from __future__ import annotations

import json
import os

import pytest

from tipai_queue.batch import Batch, BatchError, build_options, load_batch, validate_entries
from tipai_queue.fingerprint import local_weights, weights_fingerprint
from tipai_queue.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(max_prompts=100, max_prompt_chars=200)


@pytest.fixture
def options(settings):
    return build_options(settings, preset="tiny")


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_defaults_follow_the_plan(options):
    assert options.seeds == (0, 1, 2, 3)
    assert options.grid == 7
    assert (options.width, options.height) == (64, 64)


def test_json_objects_strings_and_text_files(tmp_path, settings, options):
    objects = load_batch(write(tmp_path, "a.json", [{"id": "car", "prompt": "a red car", "category": "binding"}]), options, settings)
    assert objects.prompts[0].prompt_id == "car" and objects.prompts[0].category == "binding"
    strings = load_batch(write(tmp_path, "b.json", {"prompts": ["a dog", "a cat"]}), options, settings)
    assert [p.prompt_id for p in strings.prompts] == ["p01", "p02"]
    text = load_batch(write(tmp_path, "c.txt", "# comment\na dog\n\n  a cat  \n"), options, settings)
    assert [p.prompt for p in text.prompts] == ["a dog", "a cat"]


def test_same_batch_same_job_id_and_force_changes_it(tmp_path, settings, options):
    path = write(tmp_path, "a.json", ["a dog", "a cat"])
    first, second = load_batch(path, options, settings), load_batch(path, options, settings)
    assert first.job_id() == second.job_id()
    assert first.job_id() != first.job_id(nonce="x")
    other = build_options(settings, preset="tiny", seeds=[0, 1])
    assert Batch(first.prompts, other).job_id() != first.job_id()


def test_retrained_local_weights_make_a_new_job(tmp_path, settings):
    """Same batch, same options, but the model folder's files were rewritten: a new job, not the old results."""
    folder = tmp_path / "sd"
    (folder / "unet").mkdir(parents=True)
    weights = folder / "unet" / "model.safetensors"
    weights.write_bytes(b"old weights")
    clip = tmp_path / "clip.safetensors"
    clip.write_bytes(b"clip")
    path = write(tmp_path, "a.json", ["a dog"])

    def job_id() -> str:
        options = build_options(settings, preset="mini", generator=str(folder), scorer=f"tipai-mini-clip@{clip}")
        return load_batch(path, options, settings).job_id()

    first = job_id()
    assert job_id() == first
    before = weights.stat().st_mtime_ns
    weights.write_bytes(b"new weights")  # same size: only the time tells
    # A retrain rewrites files minutes later; two writes in one test can share a clock tick, so move it on by 1 s.
    os.utime(weights, ns=(before + 10**9, before + 10**9))
    assert job_id() != first
    second = job_id()
    clip.write_bytes(b"retrained clip")
    assert job_id() != second


def test_hub_ids_and_tags_have_no_local_fingerprint(settings):
    options = build_options(settings, generator="stabilityai/sd-turbo", scorer="ViT-L-14@openai")
    assert local_weights(options.generator) is None and local_weights(options.scorer) is None
    assert options.weights == weights_fingerprint()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "no prompts"),
        (["   "], "empty"),
        ([""], "empty"),
        ([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}], "repeats"),
        ([{"id": "../x", "prompt": "x"}], "not allowed"),
        ([{"id": "/etc/passwd", "prompt": "x"}], "not allowed"),
        ([{"id": "a;rm -rf", "prompt": "x"}], "not allowed"),
        (["nul\x00byte"], "control characters"),
        (["bell\x07"], "control characters"),
        (["x" * 201], "limit is 200"),
        ([{"prompt": 3}], "must be a string"),
        ([{"id": "a"}], "must be a string"),
        ([{"prompt": "x", "colour": "red"}], "unknown field"),
        ([7], "expected a string or an object"),
    ],
)
def test_bad_entries_are_rejected_with_a_clear_message(settings, entries, message):
    with pytest.raises(BatchError, match=message):
        validate_entries(entries, settings)


def test_every_problem_is_reported_not_just_the_first(settings):
    with pytest.raises(BatchError) as caught:
        validate_entries(["ok", "", {"id": "../x", "prompt": "y"}], settings)
    assert len(caught.value.errors) == 2


def test_emoji_and_rtl_text_are_prompts(settings):
    specs = validate_entries(["a 🐈 on a mat", "قطة على حصيرة"], settings)
    assert len(specs) == 2


def test_too_many_prompts(settings):
    with pytest.raises(BatchError, match="limit is 100"):
        validate_entries(["a"] * 101, settings)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "invalid JSON"), ('{"x": 1}', '"prompts" list'), ('"a string"', "JSON list")],
)
def test_bad_json(tmp_path, settings, options, content, message):
    with pytest.raises(BatchError, match=message):
        load_batch(write(tmp_path, "bad.json", content), options, settings)


def test_missing_and_non_utf8_files(tmp_path, settings, options):
    with pytest.raises(BatchError, match="no such file"):
        load_batch(tmp_path / "missing.json", options, settings)
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(BatchError, match="not UTF-8"):
        load_batch(path, options, settings)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "nope"}, "unknown preset"),
        ({"images": 0}, "between 1 and 64"),
        ({"seeds": [-1]}, "whole number"),
        ({"seeds": [1, 1]}, "must not repeat"),
        ({"seeds": [2**32]}, "whole number"),
        ({"width": 65}, "multiple of 8"),
        ({"width": 100000}, "multiple of 8"),
        ({"steps": 0}, "steps"),
        ({"guidance": -1.0}, "guidance"),
        ({"grid": 0}, "grid"),
        ({"images": 3, "seeds": [0, 1]}, "disagrees"),
    ],
)
def test_bad_options(settings, kwargs, message):
    with pytest.raises(BatchError, match=message):
        build_options(settings, **kwargs)
