"""`tipai mini`: train and measure the mini models of the scene world."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from sceneworld.paths import MINI_DIR

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
_DEFAULT = None


@app.command()
def train(
    only: Annotated[str | None, typer.Option(help="Train only 'clip' or 'sd' (both by default).")] = None,
    out: Annotated[Path, typer.Option(help="Where the models and metrics.json go.")] = MINI_DIR,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 2,
    device: Annotated[str, typer.Option(
        help="Where to train: auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda or cuda:N.")] = "auto",
    scenes: Annotated[int | None, typer.Option(help="Rendered training scenes.")] = _DEFAULT,
    clip_steps: Annotated[int | None, typer.Option(help="Mini CLIP optimiser steps.")] = _DEFAULT,
    clip_vision_steps: Annotated[
        int | None, typer.Option(help="Mini CLIP stage-2 steps (the image tower from scratch, hard negative images).")
    ] = _DEFAULT,
    clip_vision_lr: Annotated[float | None, typer.Option(help="Mini CLIP stage-2 peak learning rate.")] = _DEFAULT,
    clip_odd_one_repeats: Annotated[int | None, typer.Option(
        help="Mini CLIP stage 2: odd-one scenes ('two red apples and a blue apple') added per counted scene.", min=0)
    ] = _DEFAULT,
    clip_crowded_repeats: Annotated[int | None, typer.Option(
        help="Mini CLIP stage 2: new layouts added per scene whose caption counts four or more.", min=0)
    ] = _DEFAULT,
    clip_continued_share: Annotated[float | None, typer.Option(
        help="With --continue-image-tower: keep the tower this share of the way from its weights before the run to "
             "after (weight-space ensembling; 1 keeps the continued weights).", min=0.0, max=1.0)] = _DEFAULT,
    new_image_tower: Annotated[bool, typer.Option(
        help="With --only clip: run stage 2 alone, a new image tower for the text tower of the CLIP already in "
             "--out (kept, so the mini SD that reads prompts with it stays valid).")] = False,
    continue_image_tower: Annotated[bool, typer.Option(
        help="With --only clip: train the image tower of the CLIP already in --out for --clip-vision-steps more "
             "stage-2 steps against new counterfactual scenes (its text tower, and so the mini SD, kept).")] = False,
    unpool_last_stage: Annotated[bool, typer.Option(
        help="With --continue-image-tower: first remove the last stage's average pools of that pooled ResNet "
             "tower, so it reads a 64-pixel scene as a 4x4 map instead of 2x2 (the same weights).")] = False,
    vae_steps: Annotated[int | None, typer.Option(help="VAE optimiser steps.")] = _DEFAULT,
    unet_steps: Annotated[int | None, typer.Option(help="UNet optimiser steps (the text encoder is the CLIP's, frozen).")] = _DEFAULT,
    unet_lr: Annotated[float | None, typer.Option(help="UNet peak learning rate.")] = _DEFAULT,
    unet_batch: Annotated[int | None, typer.Option(help="Latents per UNet step.", min=1)] = _DEFAULT,
    continue_unet: Annotated[bool, typer.Option(
        help="With --only sd: train the UNet of the SD already in --out for --unet-steps more steps (its VAE and "
             "text encoder kept), keeping the moving average of its weights.")] = False,
    prefer: Annotated[bool, typer.Option(
        help="With --only sd: preference-tune the UNet of the SD already in --out (Diffusion-DPO) on pairs it draws "
             "itself, the best and worst image of each prompt as the CLIP in --out reads them.")] = False,
    prefer_prompts: Annotated[int | None, typer.Option(
        help="With --prefer: prompts drawn (never the mini prompts), four images each.", min=1)] = _DEFAULT,
    prefer_steps: Annotated[int | None, typer.Option(help="With --prefer: DPO steps of 16 pairs.", min=1)] = _DEFAULT,
    prefer_lr: Annotated[float | None, typer.Option(help="With --prefer: DPO's learning rate.")] = _DEFAULT,
    prefer_beta: Annotated[float | None, typer.Option(
        help="With --prefer: DPO's beta, how far the tuned UNet may move from the one it starts from.")] = _DEFAULT,
    geneval_seeds: Annotated[int, typer.Option(help="Images per mini prompt in the GenEval-style score.")] = 4,
    seed: Annotated[int | None, typer.Option(
        help="Seed of the training draws: initial weights and batch order (a continuation adds its own offset); "
             "the rendered scenes keep theirs.")] = _DEFAULT,
) -> None:
    """Train the mini CLIP and the mini SD from scratch with fixed seeds (or train a UNet or an image tower
    further, or preference-tune a UNet), then print their metrics."""
    from dataclasses import replace

    from sceneworld.train import Budget, CannotTrain, run

    if only not in (None, "clip", "sd"):
        typer.echo(f"error: --only must be clip or sd, not {only!r}", err=True)
        raise typer.Exit(2)
    overrides = {"scenes": scenes, "clip_steps": clip_steps, "clip_vision_steps": clip_vision_steps,
                 "clip_vision_lr": clip_vision_lr, "clip_odd_one_repeats": clip_odd_one_repeats,
                 "clip_crowded_repeats": clip_crowded_repeats,
                 "clip_continued_share": clip_continued_share,
                 "vae_steps": vae_steps, "unet_steps": unet_steps, "unet_lr": unet_lr, "unet_batch": unet_batch,
                 "prefer_prompts": prefer_prompts, "prefer_steps": prefer_steps, "prefer_lr": prefer_lr,
                 "prefer_beta": prefer_beta, "seed": seed}
    budget = replace(Budget(), **{k: v for k, v in overrides.items() if v is not None})
    started = time.monotonic()
    # Flushed line by line: a long run is usually followed in a log file.
    try:
        metrics = run(budget, out, only, threads, geneval_seeds, log=lambda line: print(line, flush=True),
                      continue_unet=continue_unet, new_image_tower=new_image_tower,
                      continue_image_tower=continue_image_tower, device=device,
                      unpool_last_stage=unpool_last_stage, prefer=prefer)
    except CannotTrain as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"done in {time.monotonic() - started:.0f} s; metrics in {out / 'metrics.json'}")
    for key in ("clip_zero_shot", "sd_geneval", "sd_geneval_reference"):
        if key in metrics:
            typer.echo(f"{key}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics[key].items()))
    if "sd_heldout_loss" in metrics:
        typer.echo(f"sd_heldout_loss: {metrics['sd_heldout_loss']:.5f}")


@app.command()
def gallery(
    docs: Annotated[Path, typer.Option(help="Folder for the pictures.")] = MINI_DIR.parent.parent / "docs",
    seeds: Annotated[int, typer.Option(help="Generated images per mini prompt.")] = 2,
) -> None:
    """Draw docs/mini-world.png (scenes and captions), docs/mini-vae.png (held-out scenes and their VAE
    reconstructions) and docs/mini-samples.png (the mini SD's images)."""
    from sceneworld.gallery import generated_sheet, vae_sheet, world_sheet
    from sceneworld.paths import PROMPTS
    from sceneworld.train import HELDOUT_SEED
    from tipai_queue.presets import get_preset
    from workers.generation import load_generator

    preset = get_preset("mini")
    world_sheet(docs / "mini-world.png")
    generator = load_generator(preset.generator, "cpu", MINI_DIR)
    error = vae_sheet(docs / "mini-vae.png", generator.pipe.vae, HELDOUT_SEED)
    generated_sheet(docs / "mini-samples.png", generator, PROMPTS, list(range(seeds)), preset.steps, preset.guidance)
    typer.echo(f"wrote {docs / 'mini-world.png'}, {docs / 'mini-vae.png'} (reconstruction error {error:.2f}/255) "
               f"and {docs / 'mini-samples.png'}")
