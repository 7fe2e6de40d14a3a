"""The scene world: deterministic rendering, exact masks, a caption grammar that round-trips, true hard negatives."""

import json

import numpy as np
import pytest

from sceneworld.captions import parse
from sceneworld.sampling import CATEGORIES, entails, hard_negatives, sample
from sceneworld.scene import render
from sceneworld.paths import PROMPTS
from sceneworld.vocab import BACKGROUNDS, COLOURS, KINDS, RELATIONS


def samples(n, seed=0):
    rng = np.random.default_rng(seed)
    return [sample(rng, CATEGORIES[k % len(CATEGORIES)]) for k in range(n)]


def test_vocabulary_size():
    assert len(KINDS) >= 12 and len(COLOURS) == 8 and len(RELATIONS) == 5 and len(BACKGROUNDS) >= 5


def test_same_seed_same_pixels():
    first, second = samples(5, seed=3), samples(5, seed=3)
    for a, b in zip(first, second):
        assert a.caption == b.caption
        assert np.array_equal(np.asarray(render(a.layout.scene).image), np.asarray(render(b.layout.scene).image))


def test_masks_are_visible_disjoint_object_pixels():
    for s in samples(40):
        rendered = render(s.layout.scene, 64)
        assert rendered.image.size == (64, 64)
        assert rendered.masks.shape == (len(s.layout.scene.things), 64, 64)
        assert rendered.masks.sum(axis=0).max() <= 1  # each pixel belongs to at most one object
        assert all(mask.sum() > 0 for mask in rendered.masks)


def test_object_pixels_take_the_objects_colour():
    for s in samples(20, seed=5):
        rendered = render(s.layout.scene, 64)
        pixels = np.asarray(rendered.image).astype(int)
        for thing, mask in zip(s.layout.scene.things, rendered.masks):
            distance = np.abs(pixels[mask] - np.array(COLOURS[thing.colour])).sum(axis=1)
            # Outlines, wheels and windows are other colours, and thin chairs are mostly outline.
            assert (distance < 60).mean() > 0.15, (thing, s.caption.text())


def test_captions_round_trip_and_are_true():
    for s in samples(200, seed=1):
        assert parse(s.caption.text()) == s.caption
        assert entails(s.full, s.caption)


def test_hard_negatives_are_false():
    rng = np.random.default_rng(2)
    for s in samples(200, seed=2):
        for negative in hard_negatives(s.caption, s.full, rng, 3):
            assert not entails(s.full, negative), (s.caption.text(), negative.text())


def test_relations_are_read_both_ways():
    truth = parse("a red ball under a blue chair on the beach")
    assert entails(truth, parse("a chair on top of a ball"))
    assert not entails(truth, parse("a chair under a ball"))
    assert not entails(truth, parse("a ball"))  # captions are complete descriptions


def test_mini_prompts_are_in_the_grammar():
    entries = json.loads(PROMPTS.read_text())
    assert len(entries) == 20
    assert {e["category"] for e in entries} == set(CATEGORIES)
    for entry in entries:
        assert parse(entry["prompt"]).text() == entry["prompt"]


def test_text_outside_the_grammar_is_refused():
    with pytest.raises(ValueError, match="not a caption"):
        parse("an astronaut riding a horse")


def test_counterfactual_scenes_change_one_object_so_the_caption_is_false():
    from collections import Counter

    from sceneworld.counterfactual import violating

    rng = np.random.default_rng(3)
    seen = Counter()
    for _ in range(300):
        s = sample(rng)
        before, after = s.layout.scene.things, violating(s, rng).things
        said_kinds = {g.kind for g in s.caption.groups}
        if len(after) == len(before) + 1:
            seen["added"] += 1  # an unmentioned kind, or one instance beyond a group's count
            assert s.caption.relation is None
            counts = Counter(t.kind for t in after)
            assert any(counts[g.kind] > g.count for g in s.full.groups) or set(counts) - said_kinds
        elif len(after) == len(before) - 1:
            seen["removed"] += 1
            assert s.caption.relation is None
        else:
            changed = [(a, b) for a, b in zip(before, after) if a != b]
            assert len(changed) == 1, changed
            (old, new), = changed
            owner = s.caption.groups[s.layout.owners[before.index(old)]]
            if new.kind != old.kind:
                seen["kind"] += 1
                assert new.kind not in said_kinds
            else:
                seen["colour"] += 1
                assert owner.colour is not None and new.colour != owner.colour
    assert set(seen) == {"added", "removed", "kind", "colour"} and min(seen.values()) >= 20, seen


def test_odd_one_scenes_change_one_member_of_a_counted_group_and_say_so():
    from collections import Counter

    from sceneworld.odd_one import odd_one, odd_one_samples

    rng = np.random.default_rng(5)
    counted = [s for s in samples(400) if len(s.full.groups) == 1 and s.full.groups[0].count >= 2]
    assert len(counted) >= 30
    seen = Counter()
    for s in counted:
        odd = odd_one(s, rng)
        rest, changed = odd.full.groups
        (old, new), = [(a, b) for a, b in zip(s.layout.scene.things, odd.layout.scene.things) if a != b]
        seen["colour" if new.kind == old.kind else "kind"] += 1
        # The caption and the truth describe the changed scene, thing by thing, and the old caption is now false.
        assert rest.count == s.full.groups[0].count - 1 and changed.count == 1
        assert Counter((t.kind, t.colour) for t in odd.layout.scene.things) == Counter(
            {(rest.kind, rest.colour): rest.count, (changed.kind, changed.colour): 1})
        assert [odd.layout.owners[i] for i, t in enumerate(odd.layout.scene.things) if t == new] == [1]
        assert entails(odd.full, odd.caption) and not entails(odd.full, s.caption)
        said = odd.caption.groups[1]
        assert said.kind == new.kind and said.colour in (None, new.colour)
        if new.kind == old.kind:  # a changed colour the caption would not state would be invisible in it
            assert said.colour == new.colour
        assert parse(odd.caption.text()) == odd.caption
    assert min(seen.values()) >= 10, seen
    assert odd_one(next(s for s in samples(50) if len(s.full.groups) == 2), rng) is None
    assert len(odd_one_samples(counted, 3, rng)) == 3 * len(counted)


def test_crowded_scenes_lay_out_again_the_scenes_that_count_four_or_more():
    from collections import Counter

    from sceneworld.crowded import crowded_samples

    drawn = samples(400)
    crowded = crowded_samples(drawn, 2, np.random.default_rng(3))
    high = [s for s in drawn if max(g.count for g in s.caption.groups) >= 4]
    assert high and len(crowded) == 2 * len(high)
    assert [s.caption for s in crowded] == [s.caption for s in high] * 2
    moved = 0
    for old, new in zip(high * 2, crowded):
        # The same objects, so the caption stays true, most often somewhere else.
        assert Counter((t.kind, t.colour) for t in new.layout.scene.things) == Counter(
            (t.kind, t.colour) for t in old.layout.scene.things)
        assert entails(new.full, new.caption)
        moved += new.layout.scene != old.layout.scene
    assert moved >= 0.9 * len(crowded)
    assert crowded_samples(drawn, 0, np.random.default_rng(3)) == []
