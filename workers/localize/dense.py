"""Dense: one forward pass, every patch token projected into the joint image-text space (MaskCLIP / ClearCLIP).

CLIP's last attention block mixes every token with the class token's view of the whole image, so its patch
outputs barely differ from each other. Replacing that block's attention by its value path alone (value and output
projections, no query-key mixing, no residual and no MLP, as ClearCLIP found best) keeps each token about its own
patch; ln_post and proj then map it where text embeddings live. The class token still takes the ordinary path
through the last block, so the global score comes from the same pass.

A ResNet image tower ends in an attention pool whose query is the mean of its final map's cells; MaskCLIP's first
recipe reads each cell through the pool's value and output projections alone, the same change. The mini CLIP's
tower gives 4x4 such cells for a 64-pixel scene (workers/unpooled_resnet.py), too coarse for a map of their own,
but they sharpen the phrases method's (workers/localize/phrases.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from PIL import Image

from workers.devices import dtype_for
from workers.localize.common import encode_texts, pool_to_grid


def supports(scorer) -> bool:
    visual = getattr(scorer.model, "visual", None)
    if isinstance(visual, ModifiedResNet):
        return True
    return (
        isinstance(visual, VisionTransformer)
        and visual.attn_pool is None
        and visual.proj is not None
        and hasattr(visual.transformer.resblocks[-1].attn, "in_proj_weight")
    )


def patch_features(scorer, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """(global embedding (D,), patch embeddings (g, g, D)), both unit-norm, from one forward pass."""
    if not supports(scorer):
        raise ValueError(f"the dense method needs an open_clip ViT scorer with a plain attention block or a ResNet "
                         f"scorer, not {scorer.spec}")
    pixels = scorer.preprocess(image.convert("RGB")).unsqueeze(0).to(scorer.device, dtype_for(scorer.device))
    if isinstance(scorer.model.visual, ModifiedResNet):
        return _resnet_cells(scorer.model.visual, pixels)
    visual: VisionTransformer = scorer.model.visual
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


def _resnet_cells(visual: ModifiedResNet, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pool = visual.attnpool
    with torch.inference_mode():
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(pixels)))))
        global_embedding = F.normalize(pool(x).float(), dim=-1)[0]
        side = x.shape[-1]
        cells = x[0].flatten(1).T + pool.positional_embedding[1:].to(x.dtype)
        tokens = pool.c_proj(F.linear(cells, pool.v_proj.weight, pool.v_proj.bias))
        patches = F.normalize(tokens.float(), dim=-1).reshape(side, side, -1)
    return global_embedding.cpu(), patches.cpu()


def resize_map(cells: np.ndarray, width: int, height: int) -> np.ndarray:
    field = Image.fromarray(np.asarray(cells, dtype=np.float32), mode="F")
    return np.asarray(field.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float64)


def localize(scorer, image: Image.Image, prompt: str, grid: int) -> tuple[float, np.ndarray]:
    global_embedding, patches = patch_features(scorer, image)
    text = encode_texts(scorer, [prompt])[0]
    field = resize_map((patches @ text).numpy(), image.width, image.height)
    return float(global_embedding @ text), pool_to_grid(field, grid)
