"""Where a job's files live. Paths are built only from validated ids and always resolve inside the artifact root."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from PIL import Image as PILImage

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,199}$")


def _inside(root: Path, job_id: str, kind: str, stem: str) -> Path:
    for name in (job_id, stem):
        if not SAFE_NAME.fullmatch(name):  # fullmatch: "$" would let a trailing newline in
            raise ValueError(f"refusing to build a path from {name!r}")
    path = (root / job_id / kind / f"{stem}.png").resolve()
    if root.resolve() not in path.parents:
        raise ValueError(f"{path} is outside the artifact root {root}")
    return path


def image_path(root: Path, job_id: str, prompt_id: str, seed: int) -> Path:
    return _inside(root, job_id, "images", f"{prompt_id}_{seed}")


def heatmap_path(root: Path, job_id: str, image_id: str) -> Path:
    return _inside(root, job_id, "heatmaps", f"{image_id}_heatmap")


def comparison_path(root: Path, job_id: str, prompt_id: str) -> Path:
    return _inside(root, job_id, "pairs", f"{prompt_id}_comparison")


class ArtifactWriteError(OSError):
    """The artifact folder refused a file (full, read-only, not a folder); the image row records this message."""


def save_png(image: PILImage.Image, path: Path) -> None:
    """Write to a temporary name beside the target, then rename: a reader never sees half a file, and a failed
    write (disk full, killed worker) leaves nothing under the final name."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        reason = "it is not a folder" if path.parent.exists() and not path.parent.is_dir() else exc.strerror or exc
        raise ArtifactWriteError(f"cannot write {path}: {path.parent}: {reason}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ArtifactWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
