"""What the page shows, read from Postgres: a prompt's images as they progress, its pair, and the browse listing."""

from __future__ import annotations

import math

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from tipai_queue import db
from tipai_queue.models import Image, ImageStatus, Job, Pair, Prompt, Score

BROWSE_LIMIT = 200


@dataclass(frozen=True)
class ImageView:
    image_id: str
    prompt_id: str
    seed: int
    status: str
    path: str | None
    heatmap_path: str | None
    error: str | None
    score: float | None  # the global cosine
    faithfulness: float | None  # P(read as prompted), tipai_queue/models.py Score.log_faithfulness
    patch_scores: list[float] | None
    grid: int | None
    method: str | None = None
    explanation: list[dict] | None = None  # findings of workers/explain.py, each with its sentence under "text"
    truncated: bool = False  # the prompt was longer than the scorer reads


@dataclass(frozen=True)
class PairView:
    chosen: ImageView
    rejected: ImageView
    n_candidates: int
    comparison_path: str | None


@dataclass(frozen=True)
class PromptRow:
    job_id: str
    created_at: datetime
    source: str | None
    preset: str
    prompt_id: str
    category: str | None
    prompt: str
    n_images: int
    done: int
    failed: int
    best: float | None  # the highest global cosine among the prompt's images
    worst: float | None  # the lowest
    paired: bool


def images(job_id: str, prompt_id: str | None = None) -> list[ImageView]:
    query = (
        select(Image, Score)
        .outerjoin(Score, Score.image_id == Image.image_id)
        .join(Prompt, (Prompt.job_id == Image.job_id) & (Prompt.prompt_id == Image.prompt_id))
        .where(Image.job_id == job_id)
        .order_by(Prompt.position, Image.seed)
    )
    if prompt_id is not None:
        query = query.where(Image.prompt_id == prompt_id)
    with db.session_scope() as session:
        rows = session.execute(query).all()
    return [
        ImageView(
            image_id=image.image_id,
            prompt_id=image.prompt_id,
            seed=image.seed,
            status=image.status,
            # A stage's file is only final once its timestamp is set: the path column may be written first.
            path=image.path if image.generated_at else None,
            heatmap_path=image.heatmap_path if image.heatmap_at else None,
            error=image.error,
            score=score.global_score if score else None,
            faithfulness=math.exp(score.log_faithfulness) if score and score.log_faithfulness is not None else None,
            patch_scores=score.patch_scores if score else None,
            grid=score.grid if score else None,
            method=score.method if score else None,
            explanation=score.explanation if score else None,
            truncated=bool(score and score.truncated),
        )
        for image, score in rows
    ]


def pair(job_id: str, prompt_id: str) -> PairView | None:
    with db.session_scope() as session:
        row = session.get(Pair, f"{job_id}_{prompt_id}")
    if row is None:
        return None
    by_id = {view.image_id: view for view in images(job_id, prompt_id)}
    return PairView(
        chosen=by_id[row.chosen_img],
        rejected=by_id[row.rejected_img],
        n_candidates=row.n_candidates,
        comparison_path=row.comparison_path,
    )


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def prompt_rows(job_id: str | None = None, category: str | None = None, text: str | None = None) -> list[PromptRow]:
    """Newest jobs first; within a job, prompts in batch order. At most BROWSE_LIMIT rows."""
    query = (
        select(
            Job.job_id,
            Job.created_at,
            Job.source,
            Job.preset,
            Prompt.prompt_id,
            Prompt.category,
            Prompt.prompt,
            func.count(Image.image_id),
            func.count().filter(Image.status == ImageStatus.DONE),
            func.count().filter(Image.status == ImageStatus.FAILED),
            func.max(Score.global_score),
            func.min(Score.global_score),
            func.count(Pair.pair_id) > 0,
        )
        .join(Prompt, Prompt.job_id == Job.job_id)
        .join(Image, (Image.job_id == Prompt.job_id) & (Image.prompt_id == Prompt.prompt_id))
        .outerjoin(Score, Score.image_id == Image.image_id)
        .outerjoin(Pair, (Pair.job_id == Prompt.job_id) & (Pair.prompt_id == Prompt.prompt_id))
        .group_by(Job.job_id, Prompt.job_id, Prompt.prompt_id)
        .order_by(Job.created_at.desc(), Job.job_id, Prompt.position)
        .limit(BROWSE_LIMIT)
    )
    if job_id:
        query = query.where(Job.job_id == job_id)
    if category:
        query = query.where(Prompt.category == category)
    if text and text.strip():
        query = query.where(Prompt.prompt.ilike(_like(text.strip()), escape="\\"))
    with db.session_scope() as session:
        return [PromptRow(*row) for row in session.execute(query).all()]


def job_choices(limit: int = BROWSE_LIMIT) -> list[tuple[str, str]]:
    """(label, job_id), newest first; the label says where the job came from."""
    with db.session_scope() as session:
        jobs = session.execute(
            select(Job.job_id, Job.created_at, Job.source, Job.n_prompts, Job.preset)
            .order_by(Job.created_at.desc())
            .limit(limit)
        ).all()
    return [
        (f"{job_id} · {created:%Y-%m-%d %H:%M} · {n} prompt{'s' * (n != 1)} · {preset} · {source or '?'}", job_id)
        for job_id, created, source, n, preset in jobs
    ]


def categories() -> list[str]:
    with db.session_scope() as session:
        return list(
            session.scalars(select(Prompt.category).where(Prompt.category.is_not(None)).distinct().order_by(Prompt.category))
        )
