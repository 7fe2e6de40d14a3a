"""Names of grid cells in words ("upper centre", "bottom-right"), shared by the CLI, the explanations and the demo."""

from __future__ import annotations

# Up to five bands down and three across read naturally ("upper left", "lower centre") and stay coarse enough that
# a name never pretends to more precision than a 7×7 grid has. Smaller grids get fewer bands, so their corner cells
# are still the corners.
ROWS = {2: ("top", "bottom"), 3: ("top", "middle", "bottom"), 4: ("top", "upper", "lower", "bottom")}
ALL_ROWS = ("top", "upper", "middle", "lower", "bottom")
COLUMNS = {2: ("left", "right")}
ALL_COLUMNS = ("left", "centre", "right")


def _band(index: int, grid: int, names: tuple[str, ...]) -> str:
    return names[min(int((index + 0.5) / grid * len(names)), len(names) - 1)]


def cell_name(row: int, col: int, grid: int) -> str:
    """'top-left', 'upper centre', 'centre', 'middle right', 'bottom-right', ... for a cell of a grid×grid map."""
    if grid == 1:
        return "whole image"
    vertical = _band(row, grid, ROWS.get(grid, ALL_ROWS))
    horizontal = _band(col, grid, COLUMNS.get(grid, ALL_COLUMNS))
    if vertical == "middle":
        return "centre" if horizontal == "centre" else f"middle {horizontal}"
    if vertical in ("top", "bottom") and horizontal != "centre":
        return f"{vertical}-{horizontal}"
    return f"{vertical} {horizontal}"
