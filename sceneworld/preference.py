"""Preference tuning of the mini SD on pairs it draws itself: Diffusion-DPO (Wallace et al., 2024).

The project's chosen/rejected pairs, made in the small: for each of many prompts of the scene world's grammar the
mini SD draws a few images, the mini CLIP reads each one against the prompt's one-change alternatives (every
object's kind, named colour and count: the GenEval-style checks), and the image it reads best and the one it reads
worst become a pair. DPO then raises the UNet's likelihood of what it drew when it got a prompt right over what it
drew when it got it wrong, measured against a frozen copy of itself, so it learns what to draw without drifting
from the scenes it was trained on. The mini prompts themselves are never drawn, so the GenEval-style score stays
a measurement on prompts the tuning did not see."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from PIL import Image

from sceneworld.captions import parse
from sceneworld.mini_sd import NOISE, encode_texts, from_unit
from sceneworld.sampling import CATEGORIES, sample
from sceneworld.zeroshot import readings
from workers.scoring import Scorer

# Prompts drawn per generation call: the pipeline's batch is PROMPTS_PER_CALL x images per prompt.
PROMPTS_PER_CALL = 4


class NothingToPair(Exception):
    """No prompt's images read differently, so no pair could be made."""


@dataclass
class Pairs:
    texts: list[str]
    chosen: torch.Tensor  # (N, 4, 16, 16) latents as the UNet sees them: what the sampler returned
    rejected: torch.Tensor
    prompts: int  # prompts drawn; those whose images all read alike give no pair
    pass_rate: float  # share of the drawn images that passed every check


def draw_prompts(count: int, seed: int, exclude: set[str]) -> list[str]:
    """``count`` distinct captions of the five categories in turn, none in ``exclude``."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    seen = set(exclude)
    while len(texts) < count:
        text = sample(rng, CATEGORIES[len(texts) % len(CATEGORIES)]).caption.text()
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def draw_pairs(pipe: StableDiffusionPipeline, scorer: Scorer, prompts: list[str], per_prompt: int, seed: int,
               steps: int, guidance: float, log: Callable[[str], None]) -> Pairs:
    """Draw ``per_prompt`` images of each prompt, as the preset draws them, and pair the best and worst reading."""
    chosen, rejected, texts, passed = [], [], [], []
    started = time.monotonic()
    for k in range(0, len(prompts), PROMPTS_PER_CALL):
        part = prompts[k : k + PROMPTS_PER_CALL]
        # One generator per image, seeded by its place in the run: the same run draws the same images.
        generators = [torch.Generator().manual_seed(seed * 1_000_003 + (k + i) * per_prompt + j)
                      for i in range(len(part)) for j in range(per_prompt)]
        with torch.inference_mode():
            latents = pipe(prompt=[text for text in part for _ in range(per_prompt)], width=64, height=64,
                           num_inference_steps=steps, guidance_scale=guidance, generator=generators,
                           output_type="latent").images
            decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        pixels = from_unit(decoded).permute(0, 2, 3, 1)
        for i, text in enumerate(part):
            images = [Image.fromarray(p.numpy()) for p in pixels[i * per_prompt : (i + 1) * per_prompt]]
            read = readings(scorer, images, parse(text))
            passed.extend(r.share == 1.0 for r in read)
            # Share of checks passed first, how sure the reading is second: a pair needs a difference in checks.
            order = sorted(range(per_prompt), key=lambda j: (read[j].share, read[j].log_probability))
            best, worst = order[-1], order[0]
            if read[best].share > read[worst].share:
                chosen.append(latents[i * per_prompt + best].float().cpu())
                rejected.append(latents[i * per_prompt + worst].float().cpu())
                texts.append(text)
        if (k // PROMPTS_PER_CALL) % 50 == 0:
            log(f"pairs: {k + len(part)}/{len(prompts)} prompts drawn, {len(texts)} pairs "
                f"({time.monotonic() - started:.0f} s)")
    if not texts:
        raise NothingToPair(f"the images of each of the {len(prompts)} prompts passed the same share of its checks")
    return Pairs(texts, torch.stack(chosen), torch.stack(rejected), len(prompts), float(np.mean(passed)))


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Diffusion-DPO's loss from per-pair denoising errors: it falls as the tuned UNet's error on the chosen image
    falls, relative to the frozen one's, more than its error on the rejected image does. log 2 while the two agree."""
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -F.logsigmoid(-0.5 * beta * margin).mean()


def _errors(unet, noisy: torch.Tensor, t: torch.Tensor, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    predicted = unet(noisy, t, encoder_hidden_states=states).sample
    return F.mse_loss(predicted.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))


def train_dpo(unet, text_encoder, tok, pairs: Pairs, steps: int, batch: int, lr: float, beta: float, seed: int,
              log: Callable[[str], None]):
    """Tune ``unet`` in place on ``pairs`` and return it. Each step noises a chosen and a rejected latent with the
    same noise at the same timestep, as the method prescribes, so only the images differ."""
    device = unet.device
    noise_schedule = DDPMScheduler(**NOISE)
    reference = copy.deepcopy(unet).eval().requires_grad_(False)
    states = encode_texts(text_encoder, tok, pairs.texts)
    chosen, rejected = pairs.chosen.to(device), pairs.rejected.to(device)
    # A constant rate: the steps are few, and the frozen reference, not a schedule, keeps the tuning near the start.
    optimiser = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    # Drawn on the CPU on every device, so a seed draws the same batches everywhere.
    generator = torch.Generator().manual_seed(seed)
    started, recent = time.monotonic(), []
    unet.train()
    for step in range(steps):
        index = torch.randint(len(pairs.texts), (batch,), generator=generator).to(device)
        noise = torch.randn((batch, *chosen.shape[1:]), generator=generator).to(device)
        t = torch.randint(0, NOISE["num_train_timesteps"], (batch,), generator=generator).to(device)
        noisy = torch.cat([noise_schedule.add_noise(chosen[index], noise, t),
                           noise_schedule.add_noise(rejected[index], noise, t)])
        both_t, both_states, both_noise = torch.cat([t, t]), states[index].repeat(2, 1, 1), noise.repeat(2, 1, 1, 1)
        policy = _errors(unet, noisy, both_t, both_states, both_noise)
        with torch.no_grad():
            frozen = _errors(reference, noisy, both_t, both_states, both_noise)
        loss = dpo_loss(policy[:batch], policy[batch:], frozen[:batch], frozen[batch:], beta)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        recent.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log(f"dpo step {step + 1}/{steps} loss {np.mean(recent):.4f} ({time.monotonic() - started:.0f} s)")
            recent = []
    return unet.eval()
