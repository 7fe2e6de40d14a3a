"""Errors a worker reports to the user instead of a traceback."""

from __future__ import annotations


class ModelUnavailable(RuntimeError):
    """A model cannot be loaded here (not on this machine, hub unreachable); the message says what to fetch."""

    @classmethod
    def generator(cls, model_id: str, reason: str) -> ModelUnavailable:
        return cls(
            f"generator {model_id!r} is not on this machine and {reason}. Fetch it where there is network with "
            f"`huggingface-cli download {model_id}` (then copy ~/.cache/huggingface to this machine) "
            f"or pass a local folder with --generator PATH."
        )

    @classmethod
    def scorer(cls, arch: str, pretrained: str, reason: str) -> ModelUnavailable:
        return cls(
            f"scorer {arch}@{pretrained}: open_clip weights {pretrained!r} for {arch} are not on this machine and "
            f"{reason}. Fetch them where there is network with "
            f"`python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{pretrained}')\"` "
            f"(then copy ~/.cache/huggingface to this machine) or pass a local checkpoint file as {arch}@/path/to/file."
        )
