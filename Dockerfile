# One image for every Python service of the stack (workers, Flower, demo, migrations); compose picks the command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TIPAI_ARTIFACT_ROOT=/data/artifacts \
    TIPAI_STATE_DIR=/data/state \
    HF_HOME=/models/huggingface

WORKDIR /app
# The pinned torch/torchvision pair first: a CUDA build, so the same image serves GPU and CPU workers.
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md alembic.ini ./
COPY tipai_queue ./tipai_queue
COPY workers ./workers
COPY frontend ./frontend
COPY migrations ./migrations
COPY data ./data
RUN pip install -e .

# Run as an unprivileged user; /data and /models are volumes owned by it.
RUN useradd --create-home --uid 1000 tipai && mkdir -p /data /models && chown tipai /data /models
USER tipai
