"""What a job has done so far, read from Postgres (the record), for the CLI, the demo and the tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import func, select

from tipai_queue import db
from tipai_queue.models import Image, ImageStatus, Job, Pair, Prompt, Score


@dataclass(frozen=True)
class JobProgress:
    job_id: str
    n_prompts: int
    n_images: int
    generated: int
    scored: int
    heatmaps: int
    failed: int
    pairs: int
    pairable: int  # prompts that will get a pair: all images finished, at least two done
    cancelled: bool

    @property
    def finished(self) -> bool:
        """Every image done or failed and every pairable prompt paired."""
        return self.cancelled or (self.heatmaps + self.failed == self.n_images and self.pairs >= self.pairable)


@dataclass(frozen=True)
class PromptSummary:
    prompt_id: str
    prompt: str
    done: int
    failed: int
    # The most and least faithful image's P(as prompted), or their cosines for a prompt with no alternatives to
    # read it against: what its pair was chosen by (workers/pairing.py).
    best: float | None
    worst: float | None
    comparison_path: str | None
    by_faithfulness: bool


def job_progress(job_id: str) -> JobProgress | None:
    with db.session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            return None
        generated, scored, heatmaps, failed = session.execute(
            select(
                func.count(Image.generated_at),
                func.count(Image.scored_at),
                func.count(Image.heatmap_at),
                func.count().filter(Image.status == ImageStatus.FAILED),
            ).where(Image.job_id == job_id)
        ).one()
        per_prompt = (
            select(Image.prompt_id)
            .where(Image.job_id == job_id)
            .group_by(Image.prompt_id)
            .having(func.count().filter(Image.status == ImageStatus.DONE) >= 2)
        ).subquery()
        pairable = session.scalar(select(func.count()).select_from(per_prompt))
        pairs = session.scalar(select(func.count()).where(Pair.job_id == job_id))
    return JobProgress(
        job_id=job_id,
        n_prompts=job.n_prompts,
        n_images=job.n_images,
        generated=generated,
        scored=scored,
        heatmaps=heatmaps,
        failed=failed,
        pairs=pairs,
        pairable=pairable,
        cancelled=job.cancelled_at is not None,
    )


def prompt_summaries(job_id: str) -> list[PromptSummary]:
    with db.session_scope() as session:
        rows = session.execute(
            select(
                Prompt.prompt_id,
                Prompt.prompt,
                func.count(Score.image_id).filter(Image.status == ImageStatus.DONE),
                func.count().filter(Image.status == ImageStatus.FAILED),
                func.max(Score.log_faithfulness),
                func.min(Score.log_faithfulness),
                func.max(Score.global_score),
                func.min(Score.global_score),
                func.max(Pair.comparison_path),
            )
            .join(Image, (Image.job_id == Prompt.job_id) & (Image.prompt_id == Prompt.prompt_id))
            .outerjoin(Score, Score.image_id == Image.image_id)
            .outerjoin(Pair, (Pair.job_id == Prompt.job_id) & (Pair.prompt_id == Prompt.prompt_id))
            .where(Prompt.job_id == job_id)
            .group_by(Prompt.prompt_id, Prompt.prompt, Prompt.position)
            .order_by(Prompt.position)
        ).all()
    summaries = []
    for prompt_id, prompt, done, failed, most_faithful, least_faithful, best_cosine, worst_cosine, path in rows:
        # exp in Python: a long prompt's log-probability can underflow, which Postgres' exp() refuses.
        by_faithfulness = most_faithful is not None
        best, worst = ((math.exp(most_faithful), math.exp(least_faithful)) if by_faithfulness
                       else (best_cosine, worst_cosine))
        summaries.append(PromptSummary(prompt_id, prompt, done, failed, best, worst, path, by_faithfulness))
    return summaries


def failed_images(job_id: str) -> list[tuple[str, str]]:
    with db.session_scope() as session:
        return [
            (image_id, error or "")
            for image_id, error in session.execute(
                select(Image.image_id, Image.error)
                .where(Image.job_id == job_id, Image.status == ImageStatus.FAILED)
                .order_by(Image.image_id)
            )
        ]


PROMPT_CUT = "the prompt is longer than the scorer reads: only its beginning was scored"


def nothing_found(had_alternatives: bool) -> str:
    """What the scorer saw when a stored explanation has no findings: every phrase as the prompt says, or nothing it
    could check, because the prompt names no colour, kind or count it knows (emoji or another script, say)."""
    if had_alternatives:
        return "every phrase of the prompt as the prompt says"
    return ("nothing it can check: the prompt names no colour, kind or count it knows, so only the cosine and the "
            "map speak for this image")


def score_of(image_id: str) -> Score | None:
    with db.session_scope() as session:
        return session.get(Score, image_id)


def recent_jobs(limit: int = 20) -> list[tuple[Job, JobProgress]]:
    with db.session_scope() as session:
        jobs = session.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit)).all()
    return [(job, job_progress(job.job_id)) for job in jobs]
