"""Localization methods, explanations and their plumbing, on the tiny preset's random-weight CLIP (fast): the maps'
shapes and costs, occlusion's direction, explanations' form, the migration, and `tipai explain` end to end."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from sqlalchemy import text

from tests.helpers import job_id_from, tipai
from workers import localize
from workers.claims import claims
from workers.explain import explain
from workers.localize.common import encode_images, encode_texts, preprocess_batch, window_box
from workers.localize.occlusion import occlude, paint_over
from workers.regions import cell_name
from workers.scoring import load_scorer

GRID = 5
CAPTION = "a red car and a dog on the beach"


@pytest.fixture(scope="module")
def scorer():
    return load_scorer("tipai-tiny-clip@builtin", "cpu", Path(os.environ["TIPAI_MODEL_CACHE_DIR"]))


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    """Sky over sand with a red square standing on the sand, left of centre."""
    image = Image.new("RGB", (64, 64), (120, 170, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 40, 63, 63), fill=(225, 200, 140))
    draw.rectangle((8, 28, 24, 44), fill=(220, 40, 40))
    return image


@pytest.mark.parametrize("method", localize.METHODS)
def test_every_method_gives_a_finite_grid_map_and_the_same_global_cosine(scorer, scene, method):
    global_cosine, cells = localize.score(scorer, scene, CAPTION, GRID, method)
    assert cells.shape == (GRID, GRID) and np.all(np.isfinite(cells))
    assert cells.std() > 0  # a constant map would localize nothing
    reference = scorer.score(scene, CAPTION, GRID).global_cosine
    assert global_cosine == pytest.approx(reference, abs=1e-4)


def test_unknown_method_is_refused(scorer, scene):
    with pytest.raises(ValueError, match="unknown localization method 'saliency'"):
        localize.localize(scorer, scene, CAPTION, GRID, "saliency")


@contextmanager
def image_batches(scorer):
    """Yields a list that records the batch size of every forward pass through the scorer's image tower."""
    sizes = []
    hook = scorer.model.visual.conv1.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[0]))
    try:
        yield sizes
    finally:
        hook.remove()


def test_dense_needs_one_forward_pass_of_one_image(scorer, scene):
    with image_batches(scorer) as batches:
        localize.localize(scorer, scene, CAPTION, GRID, "dense")
    assert batches == [1]


def test_occlusion_scores_every_copy_the_painting_changes_in_one_batch(scorer, scene):
    """A window all of the colour it would be painted leaves the image as it is: no forward pass, no change."""
    with image_batches(scorer) as batches:
        occluded = occlude(scorer, scene, GRID)
    pixels = np.asarray(scene)
    boxes = [window_box(window, scene.width, scene.height, GRID) for window in occluded.windows]
    unchanged = np.array([np.array_equal(copy, pixels) for copy in paint_over(pixels, boxes)])
    assert 0 < unchanged.sum() < len(unchanged)  # the sky and the sand, and the windows touching the square
    assert batches == [1 + len(occluded.windows) - unchanged.sum()]
    deltas = occluded.deltas(encode_images(scorer, [scene]))[0]
    assert np.all(deltas[unchanged] == 0) and np.all(deltas[~unchanged] != 0)


@pytest.mark.parametrize("size, preprocessed_one_by_one", [(64, 1), (48, 3)])
def test_batched_preprocessing_gives_the_scorers_own_values(scorer, monkeypatch, size, preprocessed_one_by_one):
    """Images of the scorer's input size are scaled and normalised as one batch (only the first goes through the
    scorer's preprocessing, as the check); others take the scorer's own preprocessing one by one. Either way the
    values are the scorer's own, bit for bit (tests/test_mini.py checks the mini ResNet's embeddings of them)."""
    pixels = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    expected = torch.stack([scorer.preprocess(Image.fromarray(image)) for image in pixels])
    calls = []
    own = scorer.preprocess
    monkeypatch.setattr(scorer, "preprocess", lambda image: calls.append(image) or own(image))
    assert torch.equal(preprocess_batch(scorer, pixels), expected)
    assert len(calls) == preprocessed_one_by_one


def test_occlusion_points_at_what_contradicts_the_target(scorer):
    """Target the embedding of the picture without its red square: painting the square out moves the image onto
    the target, so occlusion must call the square's cell the most contradicting, whatever the weights are."""
    empty = Image.new("RGB", (64, 64), (120, 170, 230))
    square = empty.copy()
    ImageDraw.Draw(square).rectangle((32, 16, 47, 31), fill=(220, 40, 40))  # exactly cell (1, 2) of a 4×4 grid
    occluded = occlude(scorer, square, 4, sizes=(1, 2))
    cells = occluded.cells(occluded.deltas(encode_images(scorer, [empty]))[0])
    assert np.unravel_index(np.argmin(cells), cells.shape) == (1, 2), cells.round(4)
    assert cells[1, 2] < 0  # removing it raises the score: it contradicts


def test_salience_is_one_batched_backward_pass_that_leaves_the_model_untouched(scorer, scene):
    from workers.localize.phrases import salience

    directions = torch.nn.functional.normalize(torch.randn(3, scorer.model.text_projection.shape[1]), dim=-1)
    with image_batches(scorer) as batches:
        maps = salience(scorer, scene, directions, GRID)
    assert batches == [3]
    assert maps.shape == (3, GRID, GRID) and np.all(np.isfinite(maps)) and np.all(maps >= 0)
    assert not np.allclose(maps[0], maps[1]), "each direction depends on the pixels in its own way"
    assert all(p.grad is None for p in scorer.model.parameters()), "the cached model must not collect gradients"


def test_segments_keep_an_object_apart_and_average_a_map_within_it(scorer, scene):
    """The square's inside is one segment of its own; salience on its outline stays there, and what leaked onto the
    sky and the sand is diluted over their large segments."""
    from workers.localize.common import scorer_view
    from workers.localize.segments import region_means, segment

    view = scorer_view(scorer, scorer.preprocess(scene))
    np.testing.assert_allclose(view, np.asarray(scene) / 255, atol=1e-5)  # the scene as the scorer sees it
    labels = segment(view)
    square = np.zeros((64, 64), bool)
    square[28:45, 8:25] = True
    inside = labels == labels[36, 16]
    assert inside[30:43, 10:23].all() and not (inside & ~square).any()
    assert len({labels[36, 16], labels[5, 5], labels[60, 60]}) == 3, "square, sky and sand"
    salience = np.zeros((1, 64, 64))
    salience[0, 27:46, 7:26] = 1.0
    salience[0, 29:44, 9:24] = 0.0  # the square's outline and the sky's and sand's pixels touching it
    spread = region_means(salience, labels)[0]
    assert spread.sum() == pytest.approx(salience.sum())
    for label in np.unique(labels):
        assert np.ptp(spread[labels == label]) == 0, "one value per segment"
    assert spread[28, 16] > 0.5 and max(spread[5, 5], spread[60, 60]) < 0.05


def test_claims_parse_the_scene_grammar_and_split_free_text():
    said = claims(CAPTION)
    assert said.phrases == ("a red car", "a dog", "on the beach")
    aspects = {(e.phrase, e.aspect) for e in said.edits}
    assert ("a red car", "colour") in aspects and ("a dog", "missing") in aspects and ("a dog", "kind") in aspects
    assert any(e.alternative == "a blue car" and e.text == "a blue car and a dog on the beach" for e in said.edits)
    free = claims("a photo of a pink flamingo next to a green umbrella")
    assert free.phrases == ("a photo of a pink flamingo", "a green umbrella")
    assert any(e.alternative == "a red umbrella" for e in free.edits)


def test_a_counted_group_can_have_one_odd_member_of_another_colour_or_kind():
    said = claims("a green tree and three blue bananas")
    odd = {e.alternative: e for e in said.edits if e.aspect == "odd_one"}
    assert odd["two blue bananas and an orange banana"].text == "a green tree and two blue bananas and an orange banana"
    assert odd["two blue bananas and a blue cup"].phrase == "three blue bananas"
    assert not any(e.phrase == "a green tree" for e in odd.values()), "one tree has no odd member"
    assert "two blue bananas and a blue tree" not in odd, "the prompt names trees already"


def test_an_object_the_prompt_does_not_mention_has_an_alternative_for_one_or_two_groups():
    one = {e.text for e in claims("three apples in the park").edits if e.aspect == "extra"}
    assert "three apples and a car in the park" in one
    two = [e for e in claims(CAPTION).edits if e.aspect == "third_object"]
    assert {e.phrase for e in two} == {"a red car and a dog"}
    assert "a red car and a dog and a ball on the beach" in {e.text for e in two}
    assert not any(e.alternative in ("a car", "a dog") for e in two), "the prompt names them already"
    assert not any(e.aspect in ("extra", "third_object") for e in claims("a ball under a chair").edits), \
        "an added object would stand in no stated relation"


def test_a_third_object_shapes_the_map_but_is_neither_told_nor_ranked(scorer, scene):
    from dataclasses import replace

    from workers.explain import findings
    from workers.localize.phrases import UNRANKED_ASPECTS, analyse

    analysis = analyse(scorer, scene, CAPTION, GRID)
    third = [j for j in analysis.judgements if j.edit.aspect == "third_object"]
    assert len(third) == 1, "one judgement: the most likely third object"
    without = replace(analysis, judgements=tuple(j for j in analysis.judgements if j not in third))
    assert not np.allclose(analysis.cells(), without.cells())
    told = replace(analysis, judgements=tuple(replace(j, probability=0.999, prompt_probability=0.001)
                                              for j in analysis.judgements))
    assert told.judgements and all(f.aspect != "third_object" for f in findings(told, GRID))
    assert any(f.aspect == "missing" for f in findings(told, GRID)), "the others are still told"
    ranked = sum(np.log(j.prompt_probability) for j in analysis.judgements if j.edit.aspect not in UNRANKED_ASPECTS)
    assert analysis.log_faithfulness == pytest.approx(ranked)
    assert analysis.log_faithfulness > ranked + np.log(third[0].prompt_probability) + 1e-6, "not ranked by"


def test_a_missing_object_costs_no_salience_nor_patch_reading(scorer, scene):
    from workers.localize.phrases import analyse

    with image_batches(scorer) as batches:
        analysis = analyse(scorer, scene, CAPTION, GRID)
    missing = [j for j in analysis.judgements if j.edit.aspect == "missing"]
    located = [j for j in analysis.judgements if j.edit.aspect != "missing"]
    assert len(missing) == 2 and located, "both objects of the caption can be missing"
    assert batches[-2:] == [len(located), 1], "one backward pass, a direction per located judgement; one dense pass"
    assert all(not j.salience.any() and not j.patch_reading.any() for j in missing)
    assert all(j.salience.any() and j.patch_reading.any() for j in located)


def test_mirrored_texts_swap_left_and_right_and_nothing_else():
    from workers.localize.views import mirrored

    assert mirrored("a ball left of a chair") == "a ball right of a chair"
    assert mirrored("Right of a RED car, to the left of a tree") == "Left of a RED car, to the right of a tree"
    assert mirrored("a bright cleft in the rock") == "a bright cleft in the rock"


def test_shifted_moves_the_image_and_repeats_its_edges():
    from workers.localize.views import shifted

    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    moved = shifted(pixels, 2, -1)
    assert moved.shape == pixels.shape
    assert np.array_equal(moved[:-1, 2:], pixels[1:, :-2])
    assert np.array_equal(moved[:, 0], moved[:, 2]) and np.array_equal(moved[-1], moved[-2])


def test_views_read_the_mirror_image_against_the_mirrored_texts_in_one_more_forward_pass(scorer, scene):
    """Judgements are read over views (workers/localize/views.py): the image against the texts, its mirror image
    against the texts mirrored (so "left of" stays true of it), each shift against the texts; the copies go
    through the image tower in one batch."""
    from workers.localize.views import SHIFTS, mirrored, shifted, view_cosines

    texts = ["a red box left of a tree", "a red box right of a tree", "a blue box next to a tree"]
    features, mirror_features = encode_texts(scorer, texts), encode_texts(scorer, [mirrored(t) for t in texts])
    own = encode_images(scorer, [scene])[0]
    with image_batches(scorer) as batches:
        read = view_cosines(scorer, scene, own, texts, features)
    assert batches == [1 + len(SHIFTS)]
    pixels = np.asarray(scene)
    mirror = encode_images(scorer, [scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])[0]
    moved = encode_images(scorer, [Image.fromarray(shifted(pixels, right, down)) for right, down in SHIFTS])
    expected = torch.cat([(own @ features.T)[None], (mirror @ mirror_features.T)[None], moved @ features.T]).mean(0)
    assert read == pytest.approx(expected.numpy(), abs=1e-6)
    assert not np.allclose(read, (own @ features.T).numpy(), atol=1e-4), "the views are read, not only the image"


def test_a_finding_needs_its_alternative_clearly_more_likely_than_the_prompt():
    from workers.claims import Edit
    from workers.explain import MIN_LOG_ODDS, findings
    from workers.localize.phrases import Analysis, Judgement

    evidence = np.zeros((GRID, GRID))
    evidence[3, 1] = 1.0

    def judgement(alternative: str, odds: float) -> Judgement:
        edit = Edit("a red car", "colour", alternative, f"{alternative} and a dog")
        prompt_probability = 1.0 / (1.0 + np.exp(odds))
        return Judgement(edit, 1.0 - prompt_probability, prompt_probability, evidence, salience=evidence,
                         patch_reading=evidence)

    clear, slight = judgement("a blue car", MIN_LOG_ODDS + 0.01), judgement("a black car", MIN_LOG_ODDS - 0.01)
    assert slight.log_odds > 0, "the scorer prefers it, but not by enough"
    found = findings(Analysis(0.3, -1.0, evidence, (clear, slight)), GRID)
    assert [f.alternative for f in found] == ["a blue car"]
    assert (found[0].row, found[0].col) == (3, 1)


def test_explain_names_regions_and_gives_probabilities(scorer, scene):
    findings = explain(scorer, scene, CAPTION, GRID)
    assert findings, "random weights always prefer some alternative reading"
    names = {cell_name(r, c, GRID) for r in range(GRID) for c in range(GRID)}
    for finding in findings:
        assert 0.0 <= finding.probability <= 1.0
        assert finding.phrase in claims(CAPTION).phrases
        if finding.aspect == "missing":
            assert finding.region is None and "missing" in finding.text()
        elif finding.region is not None:
            assert finding.region in names and finding.text().startswith(finding.region + ":")
        assert f"p = {finding.probability:.2f}" in finding.text()


@pytest.mark.integration
def test_migrations_add_the_method_explanation_and_faithfulness_columns(stack_services):
    from tipai_queue import db

    with db.session_scope() as session:
        columns = set(session.execute(text(
            "select table_name || '.' || column_name from information_schema.columns "
            "where table_name in ('jobs', 'scores')"
        )).scalars())
        version = session.execute(text("select version_num from alembic_version")).scalar_one()
    assert {"jobs.method", "scores.explanation", "scores.method", "scores.log_faithfulness"} <= columns
    assert version == "0003"


@pytest.mark.integration
def test_tipai_explain_prints_the_stored_findings(workers, tmp_path):
    from tipai_queue import db
    from tipai_queue.models import Score

    batch = tmp_path / "prompts.json"
    batch.write_text(json.dumps([{"id": "car", "prompt": "a red car on the beach"}]))
    result = tipai("submit", str(batch), "--seeds", "5", "--method", "occlusion", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    image_id = f"{job_id_from(result.stdout)}_car_5"
    with db.session_scope() as session:
        score = session.get(Score, image_id)
    assert score.method == "occlusion" and isinstance(score.explanation, list)

    shown = tipai("explain", image_id)
    assert shown.returncode == 0, shown.stderr
    assert image_id in shown.stdout and "patch map: occlusion, 7×7" in shown.stdout
    for finding in score.explanation:
        assert finding["text"] in shown.stdout
    if not score.explanation:
        assert "as the prompt says" in shown.stdout

    missing = tipai("explain", "j000000000000_nope_0")
    assert missing.returncode == 2 and "has no score" in missing.stderr


def test_submit_refuses_an_unknown_method_and_enqueues_nothing(stack_services, tmp_path):
    batch = tmp_path / "prompts.json"
    batch.write_text(json.dumps(["a red car"]))
    result = tipai("submit", str(batch), "--method", "saliency")
    assert result.returncode == 2
    assert "unknown localization method 'saliency'" in result.stderr


def test_dense_is_refused_for_a_scorer_whose_image_tower_is_a_timm_model():
    from tipai_queue.batch import BatchError, build_options
    from tipai_queue.settings import Settings

    assert build_options(Settings(), preset="tiny", method="dense").method == "dense"
    with pytest.raises(BatchError, match="image tower of scorer 'convnext_base' is a timm model"):
        build_options(Settings(), preset="tiny", scorer="convnext_base@laion400m_s13b_b51k", method="dense")
    # open_clip's ResNets end in an attention pool whose cells it reads, the mini CLIP's among them.
    assert build_options(Settings(), preset="tiny", scorer="RN50@openai", method="dense").method == "dense"
    assert build_options(Settings(), preset="mini", method="dense").method == "dense"


def test_demo_panel_shows_the_findings_above_the_cells():
    from frontend.app import analysis_outputs
    from frontend.queries import ImageView

    finding = {"text": "lower centre: 'a red car' looks like a blue car (p = 0.81)"}
    view = ImageView("i", "p", 0, "done", None, None, None, 0.2, 0.4, [0.1] * 49, 7, "phrases", [finding])
    markdown, _ = analysis_outputs(view)
    assert markdown.index("'a red car' looks like a blue car (p = 0.81)") < markdown.index("Weakest region")
    assert "patch map: phrases" in markdown
    older = ImageView("i", "p", 0, "done", None, None, None, 0.2, None, [0.1] * 49, 7, "grid", None)
    assert analysis_outputs(older)[0].startswith("**Weakest region")


def test_demo_panel_says_when_there_was_nothing_to_check_and_when_the_prompt_was_cut():
    from frontend.app import explanation_markdown
    from frontend.queries import ImageView

    def view(faithfulness, truncated=False):
        return ImageView("i", "p", 0, "done", None, None, None, 0.2, faithfulness, [0.1] * 49, 7, "phrases", [],
                         truncated)

    assert "every phrase of the prompt as the prompt says" in explanation_markdown(view(0.9))
    unreadable = explanation_markdown(view(None))  # an emoji prompt: no colour, kind or count to check
    assert "nothing it can check" in unreadable and "as the prompt says" not in unreadable
    assert "only its beginning was scored" in explanation_markdown(view(0.9, truncated=True))
    assert "only its beginning" not in explanation_markdown(view(0.9))
