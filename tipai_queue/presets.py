"""Model presets: which generator and scorer a job uses, and their default image settings.

A generator is a diffusers pipeline id or folder (``builtin:NAME`` for models this project builds in code);
a scorer is ``ARCH@PRETRAINED`` as open_clip names them (PRETRAINED a tag or a checkpoint file)."""

from __future__ import annotations

from dataclasses import dataclass

from sceneworld.paths import clip_spec, sd_folder


@dataclass(frozen=True)
class Preset:
    name: str
    generator: str
    scorer: str
    width: int
    height: int
    steps: int
    guidance: float
    about: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "tiny", "builtin:tiny-sd", "tipai-tiny-clip@builtin", 64, 64, 2, 3.0,
            "random-weight SD and CLIP built in code: plumbing and tests, draws noise",
        ),
        Preset(
            "mini", str(sd_folder()), clip_spec(), 64, 64, 20, 8.0,
            "small SD and CLIP trained on the scene world (models/mini, docs/mini.md): runs anywhere, measurable",
        ),
        Preset(
            "sd-turbo", "stabilityai/sd-turbo", "ViT-L-14@openai", 512, 512, 1, 0.0,
            "SD-Turbo, one step; CLIP ViT-L/14 (OpenAI weights)",
        ),
        Preset(
            "sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "ViT-L-14@openai", 1024, 1024, 30, 5.0,
            "SDXL base 1.0; CLIP ViT-L/14 (OpenAI weights)",
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
