"""Database tables. Names and columns of the original plan (images, scores, pairs) are kept; jobs and prompts
hold what a batch asked for. Text primary keys are derived from what identifies a row, so every write can be an
idempotent upsert keyed on them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ImageStatus:
    QUEUED = "queued"
    GENERATING = "generating"
    GENERATED = "generated"
    SCORING = "scoring"
    SCORED = "scored"
    RENDERING = "rendering"
    DONE = "done"
    FAILED = "failed"

    RUNNING = (GENERATING, SCORING, RENDERING)
    # Between two stages: the next stage's message should be queued. It is lost if the broker was down when the
    # finished stage published it (Celery then fails that task after its work is saved).
    BETWEEN_STAGES = (GENERATED, SCORED)
    TERMINAL = (DONE, FAILED)


class Job(Base):
    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    source: Mapped[str | None] = mapped_column(Text)
    preset: Mapped[str] = mapped_column(String(64))
    generator: Mapped[str] = mapped_column(Text)
    scorer: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    guidance: Mapped[float] = mapped_column(Float)
    grid: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(32), server_default="grid")  # localization method, workers/localize
    seeds: Mapped[list[int]] = mapped_column(JSON)
    n_prompts: Mapped[int] = mapped_column(Integer)
    n_images: Mapped[int] = mapped_column(Integer)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Prompt(Base):
    __tablename__ = "prompts"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True)
    prompt_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_prompts_category", "category"),)


class Image(Base):
    __tablename__ = "images"

    image_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    prompt_id: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    path: Mapped[str | None] = mapped_column(Text)
    heatmap_path: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ImageStatus.QUEUED)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str | None] = mapped_column(String(32))
    generate_s: Mapped[float | None] = mapped_column(Float)
    worker: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    generated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heatmap_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        ForeignKeyConstraint(["job_id", "prompt_id"], ["prompts.job_id", "prompts.prompt_id"], ondelete="CASCADE"),
        # Progress counts and reconcile scan a job's images by status; pairing reads one prompt's images.
        Index("ix_images_job_status", "job_id", "status"),
        Index("ix_images_job_prompt", "job_id", "prompt_id"),
        Index("ix_images_status_updated", "status", "updated_at"),
    )


class Score(Base):
    __tablename__ = "scores"

    image_id: Mapped[str] = mapped_column(ForeignKey("images.image_id", ondelete="CASCADE"), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    global_score: Mapped[float] = mapped_column(Float)  # raw cosine of CLIP text and image embeddings
    global_score_01: Mapped[float] = mapped_column(Float)  # clip(2.5 * cosine, 0, 1), see README
    # log P(the scorer reads every phrase as the prompt says), against each phrase's one-change alternatives
    # (workers/localize/phrases.py); None when the prompt offers no alternative. Pairs are ranked by it.
    log_faithfulness: Mapped[float | None] = mapped_column(Float)
    patch_scores: Mapped[list[float]] = mapped_column(JSON)  # G*G cosines, row-major, cell 0 top-left
    grid: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(32))
    # Findings in words (workers/explain.py): which region fails which phrase, and what the scorer sees instead.
    explanation: Mapped[list[dict] | None] = mapped_column(JSON)
    scorer: Mapped[str] = mapped_column(Text)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)  # prompt cut to CLIP's 77 tokens
    score_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Pair(Base):
    __tablename__ = "pairs"

    pair_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    prompt_id: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text)
    chosen_img: Mapped[str] = mapped_column(ForeignKey("images.image_id", ondelete="CASCADE"))
    rejected_img: Mapped[str] = mapped_column(ForeignKey("images.image_id", ondelete="CASCADE"))
    c_score: Mapped[float] = mapped_column(Float)
    r_score: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    n_candidates: Mapped[int] = mapped_column(Integer)
    comparison_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        ForeignKeyConstraint(["job_id", "prompt_id"], ["prompts.job_id", "prompts.prompt_id"], ondelete="CASCADE"),
        Index("ix_pairs_job", "job_id"),
    )
