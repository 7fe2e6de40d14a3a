"""The caption grammar: what a caption asserts (groups of objects, a relation, a background), as text and back.

    caption  := group [(" and " | " " relation " ") group] [" " background]
    group    := ("a" | "an" | number) [colour] kind      (kind plural when number > 1)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sceneworld.vocab import BACKGROUNDS, COLOURS, KINDS, NUMBERS, PLURALS, RELATIONS


@dataclass(frozen=True)
class Group:
    kind: str
    colour: str | None = None  # None: the caption does not say, any colour is true
    count: int = 1

    def text(self) -> str:
        words = ([self.colour] if self.colour else []) + [self.kind if self.count == 1 else PLURALS[self.kind]]
        if self.count > 1:
            return f"{NUMBERS[self.count]} {' '.join(words)}"
        return f"{'an' if words[0][0] in 'aeiou' else 'a'} {' '.join(words)}"


@dataclass(frozen=True)
class Caption:
    groups: tuple[Group, ...]  # one or two
    relation: str | None = None  # how groups[0] stands to groups[1]; None: "and"
    background: str | None = None  # None: the caption does not say

    def text(self) -> str:
        text = self.groups[0].text()
        if len(self.groups) == 2:
            text += f" {self.relation or 'and'} {self.groups[1].text()}"
        if self.background:
            text += f" {BACKGROUNDS[self.background]}"
        return text


_ARTICLE = "(?:a|an|" + "|".join(NUMBERS.values()) + ")"
_GROUP = rf"{_ARTICLE} (?:(?:{'|'.join(COLOURS)}) )?(?:{'|'.join(sorted({*KINDS, *PLURALS.values()}, key=len, reverse=True))})"
_CAPTION = re.compile(
    rf"^(?P<a>{_GROUP})(?: (?P<link>and|{'|'.join(RELATIONS)}) (?P<b>{_GROUP}))?"
    rf"(?: (?P<bg>{'|'.join(BACKGROUNDS.values())}))?$"
)
_WORD_NUMBERS = {word: n for n, word in NUMBERS.items()} | {"a": 1, "an": 1}
_SINGULAR = {plural: kind for kind, plural in PLURALS.items()}


def _parse_group(text: str) -> Group:
    words = text.split()
    count = _WORD_NUMBERS[words[0]]
    kind = _SINGULAR.get(words[-1], words[-1])
    return Group(kind=kind, colour=words[1] if len(words) == 3 else None, count=count)


def parse(text: str) -> Caption:
    """The caption a text of the grammar asserts; ValueError for text outside the grammar."""
    match = _CAPTION.match(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a caption of the scene world")
    groups = [_parse_group(match["a"])]
    if match["b"]:
        groups.append(_parse_group(match["b"]))
    link = match["link"]
    background = next((name for name, phrase in BACKGROUNDS.items() if phrase == match["bg"]), None)
    return Caption(tuple(groups), None if link in (None, "and") else link, background)
