"""The words of the scene world: object kinds, colours, counts, relations and backgrounds."""

from __future__ import annotations

KINDS = ("car", "house", "apple", "banana", "ball", "balloon", "box", "chair", "cat", "dog", "tree", "cup")
PLURALS = {kind: ("boxes" if kind == "box" else kind + "s") for kind in KINDS}

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
    "purple": (140, 60, 190),
    "orange": (245, 140, 30),
}

NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
MAX_COUNT = 5

# Relations are exclusive by construction: "next to" means touching side by side, "to the left/right of" means
# separated by a clear gap, "on top of" stands on the other object and "under" sits beneath it.
RELATIONS = ("on top of", "under", "next to", "to the left of", "to the right of")

# How a caption names each background.
BACKGROUNDS = {"beach": "on the beach", "park": "in the park", "sky": "in the sky", "table": "on a table", "mars": "on mars"}
