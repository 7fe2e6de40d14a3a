"""Reading and validating a prompt batch. The whole batch is checked before anything is written or enqueued."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tipai_queue.fingerprint import weights_fingerprint
from tipai_queue.model_specs import generator_problem, method_problem, scorer_problem
from tipai_queue.presets import get_preset
from tipai_queue.settings import Settings
from workers.localize import METHODS, check_method

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Bidirectional embedding/override/isolate controls reorder how text *displays*; nothing in a prompt needs them.
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_SEED = 2**32 - 1
MAX_SEEDS_PER_PROMPT = 64
MAX_ERRORS_SHOWN = 20


class BatchError(ValueError):
    """The batch (or its options) cannot be run; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f"\n  … and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        super().__init__("invalid batch:\n  " + "\n  ".join(shown) + more)


@dataclass(frozen=True)
class PromptSpec:
    prompt_id: str
    prompt: str
    category: str | None = None


@dataclass(frozen=True)
class JobOptions:
    preset: str
    generator: str
    scorer: str
    width: int
    height: int
    steps: int
    guidance: float
    grid: int
    method: str
    seeds: tuple[int, ...]
    weights: str = ""  # fingerprint of local model files (tipai_queue/fingerprint.py): retrained models, new job


@dataclass(frozen=True)
class Batch:
    prompts: tuple[PromptSpec, ...]
    options: JobOptions
    source: str | None = None
    extra: dict = field(default_factory=dict)

    def job_id(self, nonce: str = "") -> str:
        """Derived from everything that decides the pixels and scores, so the same batch maps to the same job."""
        canonical = json.dumps(
            {"prompts": [asdict(p) for p in self.prompts], "options": asdict(self.options), "nonce": nonce},
            sort_keys=True,
            ensure_ascii=False,
        )
        return "j" + hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def n_images(self) -> int:
        return len(self.prompts) * len(self.options.seeds)


def check_prompt_text(text: object, settings: Settings, where: str) -> list[str]:
    if not isinstance(text, str):
        return [f"{where}: prompt must be a string, got {type(text).__name__}"]
    errors = []
    if not text.strip():
        errors.append(f"{where}: prompt is empty")
    if len(text) > settings.max_prompt_chars:
        errors.append(f"{where}: prompt has {len(text)} characters; the limit is {settings.max_prompt_chars}")
    bad = sorted({ch for ch in text if unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS})
    if bad:
        names = ", ".join(f"U+{ord(ch):04X}" for ch in bad[:5])
        errors.append(f"{where}: prompt contains control characters ({names})")
    return errors


def check_id(value: object, where: str, what: str = "id") -> list[str]:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):  # "$" alone lets a trailing newline in
        return [
            f"{where}: {what} {value!r} is not allowed; use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        ]
    return []


def parse_entries(raw: object) -> list | str:
    """JSON shapes accepted: a list of strings or of {"id", "prompt", "category"} objects, or {"prompts": list}."""
    if isinstance(raw, dict):
        if "prompts" not in raw:
            return 'a JSON object must have a "prompts" list'
        raw = raw["prompts"]
    if not isinstance(raw, list):
        return "expected a JSON list of prompts"
    return raw


def read_entries(path: Path) -> list:
    if path.is_dir():
        raise BatchError([f"{path}: is a folder; give the batch file in it"])
    if not path.is_file():
        raise BatchError([f"{path}: no such file"])
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BatchError([f"{path}: file is {size} bytes; the limit is {MAX_FILE_BYTES}"])
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BatchError([f"{path}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"]) from None
        entries = parse_entries(raw)
        if isinstance(entries, str):
            raise BatchError([f"{path}: {entries}"])
        return entries
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def build_options(
    settings: Settings,
    *,
    preset: str | None = None,
    generator: str | None = None,
    scorer: str | None = None,
    images: int | None = None,
    seeds: list[int] | None = None,
    width: int | None = None,
    height: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    grid: int | None = None,
    method: str | None = None,
) -> JobOptions:
    errors: list[str] = []
    try:
        chosen = get_preset(preset or settings.preset)
    except KeyError as exc:
        raise BatchError([str(exc.args[0])]) from None
    if seeds is None:
        count = 4 if images is None else images
        if not 1 <= count <= MAX_SEEDS_PER_PROMPT:
            errors.append(f"images per prompt must be between 1 and {MAX_SEEDS_PER_PROMPT}, got {count}")
        seeds = list(range(count)) if 1 <= count <= MAX_SEEDS_PER_PROMPT else []
    elif images is not None and images != len(seeds):
        errors.append(f"--images {images} disagrees with the {len(seeds)} seeds given")
    if len(seeds) > MAX_SEEDS_PER_PROMPT:
        errors.append(f"{len(seeds)} seeds given; at most {MAX_SEEDS_PER_PROMPT} images per prompt")
        seeds = seeds[:MAX_SEEDS_PER_PROMPT]
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            errors.append(f"seed {seed!r} must be a whole number from 0 to {MAX_SEED}")
    if len(set(seeds)) != len(seeds):
        errors.append("seeds must not repeat")
    if not seeds and not errors:
        errors.append("at least one seed is needed")
    width = chosen.width if width is None else width
    height = chosen.height if height is None else height
    for name, value in (("width", width), ("height", height)):
        if not 64 <= value <= 2048 or value % 8:
            errors.append(f"{name} must be a multiple of 8 from 64 to 2048, got {value}")
    steps = chosen.steps if steps is None else steps
    if not 1 <= steps <= 500:
        errors.append(f"steps must be between 1 and 500, got {steps}")
    guidance = chosen.guidance if guidance is None else guidance
    if not 0.0 <= guidance <= 50.0:
        errors.append(f"guidance must be between 0 and 50, got {guidance}")
    grid = settings.grid if grid is None else grid
    if not 1 <= grid <= 32:
        errors.append(f"grid must be between 1 and 32, got {grid}")
    method = settings.method if method is None else method
    try:
        check_method(method)
    except ValueError as exc:
        errors.append(str(exc))
    generator, scorer = generator or chosen.generator, scorer or chosen.scorer
    scorer_error = scorer_problem(scorer)
    # Whether the scorer can run the method is only worth asking of a known scorer and a known method.
    method_error = method_problem(method, scorer) if scorer_error is None and method in METHODS else None
    errors += [problem for problem in (generator_problem(generator), scorer_error, method_error) if problem]
    if errors:
        raise BatchError(errors)
    return JobOptions(
        preset=chosen.name,
        generator=generator,
        scorer=scorer,
        width=width,
        height=height,
        steps=steps,
        guidance=float(guidance),
        grid=grid,
        method=method,
        seeds=tuple(seeds),
        weights=weights_fingerprint(generator, scorer),
    )


def validate_entries(entries: list, settings: Settings) -> tuple[PromptSpec, ...]:
    """Entries are prompt strings or {"id", "prompt", "category"} objects."""
    errors: list[str] = []
    if not entries:
        raise BatchError(["the batch holds no prompts"])
    if len(entries) > settings.max_prompts:
        raise BatchError([f"the batch holds {len(entries)} prompts; the limit is {settings.max_prompts}"])
    width = max(2, len(str(len(entries))))
    specs: list[PromptSpec] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        where = f"prompt {index}"
        if isinstance(entry, str):
            entry = {"prompt": entry}
        if not isinstance(entry, dict):
            errors.append(f"{where}: expected a string or an object, got {type(entry).__name__}")
            continue
        unknown = set(entry) - {"id", "prompt", "category"}
        if unknown:
            errors.append(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        prompt_id = entry.get("id", f"p{index:0{width}d}")
        id_errors = check_id(prompt_id, where)
        errors += id_errors
        if not id_errors:
            if prompt_id in seen:
                errors.append(f"{where}: id {prompt_id!r} repeats prompt {seen[prompt_id]}")
            seen[prompt_id] = index
        text = entry.get("prompt")
        errors += check_prompt_text(text, settings, where if text is None else f"{where} ({prompt_id})")
        category = entry.get("category")
        if category is not None:
            errors += check_id(category, where, "category")
        if not errors:
            specs.append(PromptSpec(prompt_id=prompt_id, prompt=text.strip(), category=category))
        if len(errors) > 1000:  # enough to tell the user what is wrong; stop before a huge bad file eats memory
            break
    if errors:
        raise BatchError(errors)
    return tuple(specs)


def load_batch(path: Path, options: JobOptions, settings: Settings) -> Batch:
    return Batch(prompts=validate_entries(read_entries(path), settings), options=options, source=str(path))


def batch_from_prompts(prompts: list[str], options: JobOptions, settings: Settings, source: str | None = None) -> Batch:
    return Batch(prompts=validate_entries(prompts, settings), options=options, source=source)
