"""The models a worker process has loaded, kept for the life of the process.

This is the only global state in the workers. Models load on first use, so in a prefork pool each child process
loads its own after the fork: CUDA contexts and big weight tensors must not be created in the parent.
"""

from __future__ import annotations

import threading
from pathlib import Path

from workers.generation import Generator, load_generator
from workers.scoring import Scorer, load_scorer

_lock = threading.Lock()
_generators: dict[tuple[str, str], Generator] = {}
_scorers: dict[tuple[str, str], Scorer] = {}


def get_generator(spec: str, device: str, models_dir: Path) -> Generator:
    # Loading under the lock keeps concurrent tasks (thread pools) from loading the same weights twice.
    with _lock:
        if (spec, device) not in _generators:
            _generators[spec, device] = load_generator(spec, device, models_dir)
        return _generators[spec, device]


def get_scorer(spec: str, device: str, models_dir: Path) -> Scorer:
    with _lock:
        if (spec, device) not in _scorers:
            _scorers[spec, device] = load_scorer(spec, device, models_dir)
        return _scorers[spec, device]
