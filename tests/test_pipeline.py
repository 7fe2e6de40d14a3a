"""End to end on real services: the `tipai` CLI submits to Redis, real `celery worker` processes run the tiny
models, and Postgres and the artifact folder hold the results."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from tests.helpers import counts, job_id_from, tipai, wait_for
from workers.pairing import ranking_score

pytestmark = pytest.mark.integration

PROMPTS = [
    {"id": "car", "prompt": "a red car on the beach", "category": "attribute_binding"},
    {"id": "pets", "prompt": "a dog and a cat", "category": "object_presence"},
    {"id": "apples", "prompt": "three red apples on a plate", "category": "counting"},
]


@pytest.fixture(scope="module")
def batch_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "prompts.json"
    path.write_text(json.dumps(PROMPTS))
    return path


@pytest.fixture(scope="module")
def finished_job(workers, batch_file) -> str:
    result = tipai("submit", str(batch_file), "--images", "2", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    return job_id_from(result.stdout)


def test_batch_completes_with_rows_files_and_pairs(finished_job, stack_services):
    from tipai_queue import db
    from tipai_queue.models import Image, Pair, Score

    root = stack_services.artifact_root
    assert counts(finished_job) == {"jobs": 1, "prompts": 3, "images": 6, "scores": 6, "pairs": 3}
    with db.session_scope() as session:
        images = session.scalars(select(Image).where(Image.job_id == finished_job)).all()
        scores = {s.image_id: s for s in session.scalars(select(Score).where(Score.image_id.in_([i.image_id for i in images])))}
        pairs = session.scalars(select(Pair).where(Pair.job_id == finished_job)).all()
    for image in images:
        assert image.status == "done" and image.error is None
        assert Path(image.path) == root / finished_job / "images" / f"{image.prompt_id}_{image.seed}.png"
        assert Path(image.heatmap_path) == root / finished_job / "heatmaps" / f"{image.image_id}_heatmap.png"
        assert Path(image.path).stat().st_size > 0 and Path(image.heatmap_path).stat().st_size > 0
        score = scores[image.image_id]
        assert len(score.patch_scores) == 49 and score.grid == 7
        assert -1.0 <= score.global_score <= 1.0
        assert score.global_score_01 == pytest.approx(min(max(2.5 * score.global_score, 0.0), 1.0))
    for pair in pairs:
        assert pair.chosen_img != pair.rejected_img
        assert pair.c_score >= pair.r_score and pair.margin == pytest.approx(pair.c_score - pair.r_score)
        prompt_scores = [ranking_score(s.global_score, s.log_faithfulness)
                         for i, s in scores.items() if i.startswith(f"{finished_job}_{pair.prompt_id}_")]
        assert pair.c_score == max(prompt_scores) and pair.r_score == min(prompt_scores)
        assert Path(pair.comparison_path) == root / finished_job / "pairs" / f"{pair.prompt_id}_comparison.png"
        assert Path(pair.comparison_path).is_file()
    leftovers = [p for p in (root / finished_job).rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # no half-written temporary files


def test_resubmission_reuses_the_job_and_creates_nothing(finished_job, batch_file):
    from tipai_queue import db
    from tipai_queue.models import Image

    before = counts()
    with db.session_scope() as session:
        stamps = dict(session.execute(select(Image.image_id, Image.updated_at).where(Image.job_id == finished_job)).all())
    result = tipai("submit", str(batch_file), "--images", "2", "--wait")
    assert result.returncode == 0, result.stderr
    assert job_id_from(result.stdout) == finished_job
    assert "submitted before" in result.stdout
    time.sleep(2)  # a wrongly enqueued task would have touched a row by now
    assert counts() == before
    with db.session_scope() as session:
        after = dict(session.execute(select(Image.image_id, Image.updated_at).where(Image.job_id == finished_job)).all())
    assert after == stamps


def test_same_seed_reproduces_the_same_pixels(finished_job, batch_file):
    forced = tipai("submit", str(batch_file), "--images", "2", "--force", "--wait")
    assert forced.returncode == 0, forced.stderr
    second = job_id_from(forced.stdout)
    assert second != finished_job
    from tipai_queue.settings import get_settings

    root = get_settings().artifact_root
    for prompt in PROMPTS:
        for seed in (0, 1):
            name = f"{prompt['id']}_{seed}.png"
            assert (root / finished_job / "images" / name).read_bytes() == (root / second / "images" / name).read_bytes()


def test_status_reports_a_finished_job(finished_job):
    result = tipai("status", finished_job)
    assert result.returncode == 0
    assert "6/6 images done, 0 failed, 3 pairs" in result.stdout
    from tipai_queue.settings import get_settings

    out = get_settings().artifact_root / finished_job
    for folder in ("images", "heatmaps", "pairs"):
        assert f"{folder + ':':<9} {out / folder}" in result.stdout
    # Piped, the table keeps one line per prompt: wrapped at 80 columns, the comparison names broke in two.
    rows = [line for line in result.stdout.splitlines() if "a red car on the beach" in line]
    assert len(rows) == 1 and "car_comparison.png" in rows[0], result.stdout
    assert "/tipai (tables jobs, prompts, images, scores, pairs)" in result.stdout, result.stdout


def test_reconcile_pairs_a_prompt_whose_chord_callback_was_lost(finished_job, workers):
    from tipai_queue import db
    from tipai_queue.models import Pair

    with db.session_scope() as session:
        session.execute(Pair.__table__.delete().where(Pair.job_id == finished_job, Pair.prompt_id == "car"))
    result = tipai("reconcile")
    assert result.returncode == 0 and "prompts sent to pairing: 1" in result.stdout
    wait_for(lambda: counts(finished_job)["pairs"] == 3)


@pytest.mark.parametrize("status", ["scoring", "generated"])
def test_reconcile_requeues_an_image_stuck_running_or_between_stages(workers, tmp_path, status):
    """A worker that died after Redis forgot its message leaves a row `scoring` forever, and a stage that finished
    while the broker was down leaves it `generated` with no score message; reconcile finishes both."""
    from tipai_queue import db
    from tipai_queue.models import Image, Pair

    path = tmp_path / "stuck.json"
    path.write_text(json.dumps(["a ball under a chair"]))
    result = tipai("submit", str(path), "--images", "2", "--wait")
    assert result.returncode == 0, result.stderr
    job = job_id_from(result.stdout)
    with db.session_scope() as session:
        session.execute(
            update(Image).where(Image.job_id == job, Image.seed == 1)
            .values(status=status, scored_at=None, heatmap_at=None, updated_at=func.now() - func.make_interval(0, 0, 0, 0, 1))
        )
        session.execute(Pair.__table__.delete().where(Pair.job_id == job))
    result = tipai("reconcile", "--stuck-after", "60")
    assert result.returncode == 0 and "images requeued: 1" in result.stdout, result.stdout
    wait_for(lambda: counts(job)["pairs"] == 1)
    with db.session_scope() as session:
        image = session.scalars(select(Image).where(Image.job_id == job, Image.seed == 1)).one()
    assert image.status == "done" and image.scored_at is not None and image.heatmap_at is not None
