"""What a prompt claims, phrase by phrase, and the prompts one change away from it.

Each change names the phrase it touches and what the image would show instead ("a red car" -> "a blue car"), so a
scorer that prefers the changed prompt says, in words, what it sees. Prompts of the scene world's grammar are
parsed with its own parser and get every kind of change the mini CLIP was trained to tell apart (colour, kind,
count, a missing or an extra object, relation, background), plus one member of a counted group in another colour
or kind, which names what no change of the whole group can ("four purple bananas and an orange banana"); free text
falls back to a simple split into noun phrases, with colour changes and missing phrases only, since its nouns have
no vocabulary to swap in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from sceneworld.captions import Caption, Group, parse
from sceneworld.vocab import BACKGROUNDS, COLOURS, KINDS, MAX_COUNT, RELATIONS

# What each kind of change means when the scorer prefers it. odd_one: one member of a counted group differs in
# colour or kind ("five purple bananas" -> "four purple bananas and an orange banana"). third_object: an object
# beyond the two groups a prompt names ("a dog and a cat" -> "a dog and a cat and a ball"), what "extra" is for a
# prompt of one group.
ASPECTS = ("colour", "kind", "count", "missing", "extra", "relation", "background", "odd_one", "third_object")

# Colour words recognised in free text; the scene world's eight plus common ones.
FREE_COLOURS = (*COLOURS, "pink", "brown", "grey", "gray", "golden", "silver")
_FREE_SPLIT = re.compile(
    r",|;|\band\b|\bwith\b|\bnext to\b|\bon top of\b|\bunder\b|\bbeside\b|\bbehind\b|\bin front of\b"
    r"|\b(?:to the )?(?:left|right) of\b|\bon\b|\bin\b|\bat\b|\bnear\b"
)


@dataclass(frozen=True)
class Edit:
    # the phrase of the prompt the change touches ("a red car"; for an extra or third object, all the objects it
    # names: "a red car", "a red car and a dog")
    phrase: str
    aspect: str  # one of ASPECTS
    alternative: str  # what the image would show instead ("a blue car"; for missing: "no car")
    text: str  # the whole prompt with the change made


@dataclass(frozen=True)
class Claims:
    prompt: str
    phrases: tuple[str, ...]
    edits: tuple[Edit, ...]


def _with_group(caption: Caption, index: int, group: Group) -> Caption:
    groups = list(caption.groups)
    groups[index] = group
    return replace(caption, groups=tuple(groups))


def _odd_one(caption: Caption, index: int, odd: Group) -> Edit:
    """The group with one member replaced by ``odd``. The text is spliced in rather than built as a Caption: a
    caption holds at most two groups, and the scene world's captions never name one kind twice."""
    group, text = caption.groups[index], caption.text()
    alternative = f"{replace(group, count=group.count - 1).text()} and {odd.text()}"
    # Search for the second group only after the first, so a first group that happens to contain its text is left.
    start = text.index(group.text(), len(caption.groups[0].text()) if index else 0)
    new = text[:start] + alternative + text[start + len(group.text()):]
    return Edit(group.text(), "odd_one", alternative, new)


def _caption_edits(caption: Caption) -> list[Edit]:
    edits = []
    kinds = {g.kind for g in caption.groups}
    for i, group in enumerate(caption.groups):
        phrase = group.text()

        def edit(aspect: str, new: Caption, alternative: str, phrase: str = phrase) -> Edit:
            return Edit(phrase, aspect, alternative, new.text())

        if group.colour:
            for colour in COLOURS:
                if colour != group.colour:
                    changed = replace(group, colour=colour)
                    edits.append(edit("colour", _with_group(caption, i, changed), changed.text()))
                    if group.count > 1:
                        edits.append(_odd_one(caption, i, replace(group, colour=colour, count=1)))
        for kind in KINDS:
            if kind not in kinds:
                changed = replace(group, kind=kind)
                edits.append(edit("kind", _with_group(caption, i, changed), changed.text()))
                if group.count > 1:
                    edits.append(_odd_one(caption, i, replace(group, kind=kind, count=1)))
        if caption.relation is None:
            for count in range(1, MAX_COUNT + 1):
                if count != group.count:
                    changed = replace(group, count=count)
                    edits.append(edit("count", _with_group(caption, i, changed), changed.text()))
        if len(caption.groups) == 2:
            rest = Caption((caption.groups[1 - i],), None, caption.background)
            edits.append(edit("missing", rest, f"no {group.kind}"))
    if caption.relation is None:  # an added object would stand in no stated relation
        # Spliced like the odd one: a caption holds at most two groups.
        objects = Caption(caption.groups).text()
        where = f" {BACKGROUNDS[caption.background]}" if caption.background else ""
        aspect = "extra" if len(caption.groups) == 1 else "third_object"
        for kind in KINDS:
            if kind not in kinds:
                added = Group(kind).text()
                edits.append(Edit(objects, aspect, added, f"{objects} and {added}{where}"))
    if caption.relation:
        for relation in RELATIONS:
            if relation != caption.relation:
                edits.append(Edit(caption.relation, "relation", relation, replace(caption, relation=relation).text()))
    if caption.background:
        for background, words in BACKGROUNDS.items():
            if background != caption.background:
                new = replace(caption, background=background)
                edits.append(Edit(BACKGROUNDS[caption.background], "background", words, new.text()))
    return edits


def free_phrases(prompt: str) -> list[str]:
    """Noun phrases of free text: the pieces between conjunctions, prepositions and punctuation."""
    return [piece.strip() for piece in _FREE_SPLIT.split(prompt.lower()) if piece and piece.strip()]


def _free_edits(prompt: str, phrases: list[str]) -> list[Edit]:
    edits = []
    lowered = prompt.lower()
    for phrase in phrases:
        words = phrase.split()
        for position, word in enumerate(words):
            if word in FREE_COLOURS:
                for colour in COLOURS:
                    if colour != word:
                        changed = " ".join(words[:position] + [colour] + words[position + 1:])
                        edits.append(Edit(phrase, "colour", changed, lowered.replace(phrase, changed, 1)))
        if len(phrases) > 1:
            rest = " and ".join(other for other in phrases if other != phrase)
            edits.append(Edit(phrase, "missing", f"no {words[-1]}", rest))
    return edits


def claims(prompt: str) -> Claims:
    try:
        caption = parse(prompt)
    except ValueError:
        phrases = free_phrases(prompt)
        return Claims(prompt, tuple(phrases), tuple(_free_edits(prompt, phrases)))
    phrases = [g.text() for g in caption.groups]
    phrases += [caption.relation] if caption.relation else []
    phrases += [BACKGROUNDS[caption.background]] if caption.background else []
    return Claims(caption.text(), tuple(phrases), tuple(_caption_edits(caption)))
