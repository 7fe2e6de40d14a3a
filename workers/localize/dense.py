"""Dense: one forward pass, every patch token projected into the joint image-text space (MaskCLIP / ClearCLIP).

CLIP's last attention block mixes every token with the class token's view of the whole image, so its patch
outputs barely differ from each other. Replacing that block's attention by its value path alone (value and output
projections, no query-key mixing, no residual and no MLP, as ClearCLIP found best) keeps each token about its own
patch; ln_post and proj then map it where text embeddings live. The class token still takes the ordinary path
through the last block, so the global score comes from the same pass.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from PIL import Image

from workers.devices import dtype_for
from workers.localize.common import encode_texts, pool_to_grid


def supports(scorer) -> bool:
    visual = getattr(scorer.model, "visual", None)
    return (
        isinstance(visual, VisionTransformer)
        and visual.attn_pool is None
        and visual.proj is not None
        and hasattr(visual.transformer.resblocks[-1].attn, "in_proj_weight")
    )


def patch_features(scorer, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """(global embedding (D,), patch embeddings (g, g, D)), both unit-norm, from one forward pass."""
    if not supports(scorer):
        raise ValueError(f"the dense method needs an open_clip ViT scorer with a plain attention block, not {scorer.spec}")
    visual: VisionTransformer = scorer.model.visual
    pixels = scorer.preprocess(image.convert("RGB")).unsqueeze(0).to(scorer.device, dtype_for(scorer.device))
    *blocks, last = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    with torch.inference_mode():
        x = visual._embeds(pixels)
        x = x if batch_first else x.transpose(0, 1)
        for block in blocks:
            x = block(x)
        whole = last(x)
        whole = whole if batch_first else whole.transpose(0, 1)
        x = x if batch_first else x.transpose(0, 1)
        pooled, _ = visual._pool(whole)
        width = x.shape[-1]
        weight, bias = last.attn.in_proj_weight, last.attn.in_proj_bias
        values = F.linear(last.ln_1(x[:, 1:]), weight[2 * width:], None if bias is None else bias[2 * width:])
        tokens = visual.ln_post(last.attn.out_proj(values)) @ visual.proj
        global_embedding = F.normalize((pooled @ visual.proj).float(), dim=-1)[0]
        side = int(round(tokens.shape[1] ** 0.5))
        patches = F.normalize(tokens.float(), dim=-1)[0].reshape(side, side, -1)
    return global_embedding.cpu(), patches.cpu()


def resize_map(cells: np.ndarray, width: int, height: int) -> np.ndarray:
    field = Image.fromarray(np.asarray(cells, dtype=np.float32), mode="F")
    return np.asarray(field.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float64)


def localize(scorer, image: Image.Image, prompt: str, grid: int) -> tuple[float, np.ndarray]:
    global_embedding, patches = patch_features(scorer, image)
    text = encode_texts(scorer, [prompt])[0]
    field = resize_map((patches @ text).numpy(), image.width, image.height)
    return float(global_embedding @ text), pool_to_grid(field, grid)
