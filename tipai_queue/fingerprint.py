"""A short fingerprint of the local weights a model spec names. It is part of a job's id, so that after a local
model is retrained (`tipai mini train`, a new checkpoint copied over) the same batch becomes a new job instead of
returning the results the old weights drew."""

from __future__ import annotations

import hashlib
from pathlib import Path


def local_weights(spec: str) -> Path | None:
    """The file (scorer: ``arch@file``) or folder (generator) a spec names on this machine; None for hub ids,
    pretrained tags and models built in code, which carry no local state to fingerprint."""
    if "@" in spec:
        path = Path(spec.partition("@")[2]).expanduser()
        return path if path.is_file() else None
    path = Path(spec).expanduser()
    return path if path.is_dir() else None


def weights_fingerprint(*specs: str) -> str:
    """Names, sizes and modification times, not contents: hashing a local SDXL folder (7 GB) on every submit would
    cost seconds, while a retrain or a copy always rewrites the files."""
    digest = hashlib.sha256()
    for spec in specs:
        path = local_weights(spec)
        if path is None:
            continue
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            stat = file.stat()
            digest.update(f"{spec}:{file.relative_to(path.parent)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]
