"""Bad input through the CLI: a clear message, a non-zero exit, and nothing written or enqueued."""

from __future__ import annotations

import json

import pytest

from tests.helpers import counts, tipai

pytestmark = pytest.mark.integration


@pytest.fixture
def nothing_changes(stack_services):
    """Asserts after the test that no row, queued message or artifact appeared."""
    from tipai_queue.queues import queue_lengths

    root = stack_services.artifact_root
    before = (counts(), queue_lengths(), sorted(root.rglob("*")) if root.exists() else [])
    yield
    after = (counts(), queue_lengths(), sorted(root.rglob("*")) if root.exists() else [])
    assert after == before


def write(tmp_path, content, name="batch.json"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, (), "no such file"),
        ("{oops", (), "invalid JSON"),
        (["a dog", "  "], (), "prompt 2 (p02): prompt is empty"),
        ([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}], (), "repeats prompt 1"),
        ([{"id": "../x", "prompt": "x"}], (), "id '../x' is not allowed"),
        (["a dog"], ("--preset", "nope"), "unknown preset 'nope'"),
        (["a dog"], ("--seeds", "-1"), "whole number"),
        (["a dog"], ("--seeds", "1.5"), "whole number"),
        (["a dog"], ("--images", "0"), "between 1 and 64"),
        (b"\xff\xfe not utf8", (), "not UTF-8"),
        (["a dog"], ("--seeds", "5-1"), "runs backwards"),
        (["a dog"], ("--scorer", "garbage"), "must look like ARCH@PRETRAINED"),
        (["a dog"], ("--scorer", "ViT-B-32@"), "must look like ARCH@PRETRAINED"),
        (["a dog"], ("--scorer", "NoSuchArch@openai"), "'NoSuchArch' is not known to open_clip"),
        (["a dog"], ("--generator", "not a model!"), "neither a Hugging Face model id"),
        ("folder", (), "is a folder"),
    ],
)
def test_bad_batches_fail_cleanly(tmp_path, nothing_changes, content, args, message):
    if content is None:
        path = tmp_path / "missing.json"
    elif content == "folder":
        path = tmp_path
    else:
        path = write(tmp_path, content)
    result = tipai("submit", str(path), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr


@pytest.mark.parametrize("which", ["TIPAI_BROKER_URL", "TIPAI_DATABASE_URL"])
def test_unreachable_service_is_named(tmp_path, nothing_changes, which):
    dead = {"TIPAI_BROKER_URL": "redis://127.0.0.1:1/0", "TIPAI_DATABASE_URL": "postgresql+psycopg://tipai@127.0.0.1:1/tipai"}
    result = tipai("submit", str(write(tmp_path, ["a dog"])), env={which: dead[which]})
    assert result.returncode == 3
    assert "127.0.0.1:1" in result.stderr and "does not answer" in result.stderr


@pytest.mark.parametrize("command", [("jobs",), ("cancel", "nojob"), ("reconcile",), ("status", "nojob"), ("explain", "x")])
def test_commands_name_a_database_that_does_not_answer(command):
    result = tipai(*command, env={"TIPAI_DATABASE_URL": "postgresql+psycopg://tipai@127.0.0.1:1/tipai"})
    assert result.returncode == 3, result.stdout + result.stderr
    said = " ".join(result.stderr.split())  # the terminal's wrapping aside
    assert "127.0.0.1:1" in said and "does not answer (" in said and "Connection refused" in said
    assert "Start the services with `tipai up`" in said
    assert "Traceback" not in result.stderr


def test_jobs_limit_must_be_positive(stack_services):
    result = tipai("jobs", "--limit", "-1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_a_model_path_missing_here_is_a_warning_not_an_error(tmp_path):
    """The workers may have folders the submitter does not (docker-compose mounts models into workers only)."""
    from tipai_queue.model_specs import generator_problem, missing_here, scorer_problem

    folder, checkpoint = tmp_path / "sd", tmp_path / "clip.safetensors"
    assert generator_problem(str(folder)) is None and scorer_problem(f"ViT-B-32@{checkpoint}") is None
    assert missing_here(str(folder), f"ViT-B-32@{checkpoint}") == [str(folder), str(checkpoint)]
    folder.mkdir()
    checkpoint.touch()
    assert missing_here(str(folder), f"ViT-B-32@{checkpoint}") == []
    assert missing_here("stabilityai/sd-turbo", "ViT-B-32@openai") == []
    assert scorer_problem("tipai-mini-clip@builtin") is None  # the project's own architectures count too


def test_a_gpu_this_machine_lacks_stops_run_before_anything_starts(tmp_path, nothing_changes):
    """cuda:99 is past the GPUs of any machine the tests run on, with a GPU or without."""
    state = tmp_path / "state"
    result = tipai("run", str(write(tmp_path, ["a dog"])), "--images", "1",
                   env={"TIPAI_DEVICE": "cuda:99", "TIPAI_STATE_DIR": str(state)})
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "TIPAI_DEVICE=cuda:99" in said and "use 'cpu' or 'auto'" in said and "Traceback" not in said
    assert not state.exists(), "the stack started"


def test_a_generation_worker_refuses_a_gpu_this_machine_lacks():
    """Started, it would fail every image sent to it; not starting leaves them queued for a worker that can."""
    result = tipai("worker", "gpu", env={"TIPAI_DEVICE": "cuda:99"}, timeout=120)
    assert result.returncode != 0
    said = " ".join(result.stderr.split())
    assert "TIPAI_DEVICE=cuda:99: cuda:99 was asked for" in said and "use 'cpu' or 'auto'" in said, said[-2000:]
    assert " ready." not in said, "it took tasks first"


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("TIPAI_DEVICE", "gpu", "TIPAI_DEVICE: String should match pattern '^(auto|cpu|cuda(:\\d+)?)$'"),
    ("TIPAI_DEMO_AUTH", "secret-without-user", 'TIPAI_DEMO_AUTH must look like "user:password"'),
])
def test_a_setting_that_does_not_parse_is_named_without_a_traceback(variable, value, message):
    result = tipai("jobs", env={variable: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert value not in result.stderr  # it may be a password
