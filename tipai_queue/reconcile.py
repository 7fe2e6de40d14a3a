"""Finishing what the queue lost: jobs written but never enqueued (a submitter that died), images stuck in a
running state (a worker that died after Redis forgot its message) or between stages (a stage that finished while
the broker was down, so its next stage was never queued), prompts whose chord callback never ran."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, exists, func, select, update

from tipai_queue import canvas, db
from tipai_queue.models import Image, ImageStatus, Job, Pair
from tipai_queue.settings import Settings
from tipai_queue.submit import ensure_enqueued

NEVER_ENQUEUED_AFTER = timedelta(minutes=2)


@dataclass
class ReconcileReport:
    jobs_enqueued: int = 0
    images_requeued: int = 0
    prompts_paired: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def next_stage(image: Image) -> str:
    if image.generated_at is None:
        return "generate"
    if image.scored_at is None:
        return "score"
    return "heatmap"


def reconcile_once(settings: Settings, stuck_after_s: float | None = None) -> ReconcileReport:
    report = ReconcileReport()
    now = datetime.now(UTC)
    stuck_before = now - timedelta(seconds=settings.stuck_after_s if stuck_after_s is None else stuck_after_s)
    with db.session_scope() as session:
        orphan_jobs = session.scalars(
            select(Job.job_id).where(
                Job.enqueued_at.is_(None), Job.cancelled_at.is_(None), Job.created_at < now - NEVER_ENQUEUED_AFTER
            )
        ).all()
    report.jobs_enqueued = sum(ensure_enqueued(job_id) for job_id in orphan_jobs)

    with db.session_scope() as session:
        # Claim stuck rows by bumping updated_at in the same statement, so two reconcilers never requeue one image.
        stuck = session.execute(
            update(Image)
            .where(
                Image.status.in_(ImageStatus.RUNNING + ImageStatus.BETWEEN_STAGES),
                Image.updated_at < stuck_before,
                Image.job_id.in_(select(Job.job_id).where(Job.cancelled_at.is_(None))),
            )
            .values(status=ImageStatus.QUEUED, updated_at=now)
            .returning(Image)
        ).scalars().all()
    for image in stuck:
        canvas.resume_chain(image.job_id, image.prompt_id, image.image_id, next_stage(image)).apply_async()
    report.images_requeued = len(stuck)

    with db.session_scope() as session:
        # Prompts whose images are all finished (done or failed) but that have no pair yet.
        candidates = session.execute(
            select(Image.job_id, Image.prompt_id)
            .join(Job, Job.job_id == Image.job_id)
            .where(Job.cancelled_at.is_(None), Job.enqueued_at.is_not(None))
            .group_by(Image.job_id, Image.prompt_id)
            .having(
                func.count().filter(Image.status.not_in(ImageStatus.TERMINAL)) == 0,
                func.count().filter(Image.status == ImageStatus.DONE) >= 2,
            )
            .where(
                ~exists().where(and_(Pair.job_id == Image.job_id, Pair.prompt_id == Image.prompt_id))
            )
        ).all()
    for job_id, prompt_id in candidates:
        canvas.task("pair", job_id, prompt_id).apply_async()
    report.prompts_paired = len(candidates)
    return report
