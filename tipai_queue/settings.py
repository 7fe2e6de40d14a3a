"""One typed settings object, read from ``TIPAI_*`` environment variables (and an optional ``.env``)."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The devices TIPAI_DEVICE and workers/devices.py accept; here, where it is read without importing torch.
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIPAI_", env_file=".env", extra="ignore")

    # Services. The defaults match what `tipai up` starts on this machine.
    broker_url: str = "redis://127.0.0.1:6390/0"
    result_backend: str = "redis://127.0.0.1:6390/1"
    database_url: str = "postgresql+psycopg://tipai@127.0.0.1:5490/tipai"

    # Where images, heatmaps and comparisons are written, and where `tipai up` keeps service data.
    artifact_root: Path = PROJECT_ROOT / "outputs"
    state_dir: Path = PROJECT_ROOT / ".tipai"

    # Models.
    # mini: the committed scene-world models, which run on any CPU and draw what they are asked; sd-turbo or
    # sdxl on GPUs (docker-compose.yml sets sd-turbo).
    preset: str = "mini"
    # Whether this machine has that GPU is for the generation worker to check when it starts (workers/tasks.py).
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)
    grid: int = 7
    method: str = "phrases"  # localization method of the patch scores (workers/localize, docs/localization.md)
    model_cache_dir: Path | None = None  # where built-in (tiny) models are materialised; default state_dir/models

    # Queue behaviour.
    visibility_timeout_s: int = 3600  # must exceed the longest task, or Redis redelivers a running task
    stuck_after_s: int = 1800  # reconcile requeues images running, or waiting between stages, for longer than this
    reconcile_every_s: int = 60
    db_retry_max: int = 8
    # Fault drills (tests/faults) slow generate and score down so a kill or restart lands mid-task. Keep at 0.
    slow_tasks_s: float = Field(default=0.0, ge=0.0)

    # Limits on what a batch may ask for (validated before anything is enqueued).
    max_prompts: int = 50_000
    max_prompt_chars: int = 2_000

    # Monitoring and demo.
    flower_host: str = "127.0.0.1"
    flower_port: int = 5555
    flower_user: str | None = None
    flower_password: SecretStr | None = None
    demo_host: str = "127.0.0.1"
    demo_port: int = 7860
    demo_auth: SecretStr | None = None  # "user:password"; unset leaves the page open to whoever reaches the port
    # Browser sessions followed at once; more wait in line without their job even submitted. A session is a thread
    # that mostly sleeps between polls, so this is cheap; it stays under Gradio's 40 threads to leave room for Browse.
    demo_concurrency: int = Field(default=32, ge=1)

    worker_concurrency_cpu: int = Field(default=2, ge=1)

    @field_validator("artifact_root", "state_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("demo_auth", mode="after")
    @classmethod
    def _user_and_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            user, sep, password = value.get_secret_value().partition(":")
            if not (user and sep and password):
                raise ValueError('TIPAI_DEMO_AUTH must look like "user:password"')
        return value

    @property
    def models_dir(self) -> Path:
        return (self.model_cache_dir or self.state_dir / "models").expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    """The settings, or for a TIPAI_* variable that does not parse, its name and the problem on stderr and exit
    status 2 (bad input), the first thing any command, worker or the demo does."""
    try:
        return Settings()
    except ValidationError as error:
        for problem in error.errors():
            name = "TIPAI_" + "_".join(str(part) for part in problem["loc"]).upper()
            # Not the value: it may be a password.
            print(f"error: {name}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
