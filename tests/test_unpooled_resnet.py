"""A pooled ResNet tower's weights, carried over to its unpooled twin (workers/unpooled_resnet.py)."""

import pytest
import torch

from workers.unpooled_resnet import adapt, from_pooled, preprocess_size

POSITIONAL = "visual.attnpool.positional_embedding"


def test_positional_grid_is_interpolated_and_the_class_token_and_other_weights_kept():
    grid = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # one channel; class token 9
    state = {POSITIONAL: torch.cat([torch.tensor([[9.0]]), grid.reshape(4, 1)]).half(), "other": torch.ones(2)}
    moved = from_pooled(state)
    assert moved[POSITIONAL].dtype == torch.float16 and moved[POSITIONAL].shape == (17, 1)
    assert moved[POSITIONAL][0].item() == 9.0
    finer = moved[POSITIONAL][1:].float().reshape(4, 4)
    # Bilinear, half-pixel centres: the corners keep their cells' values, and every row and column still rises.
    assert finer[0, 0] == 1.0 and finer[3, 3] == 4.0
    assert torch.all(finer.diff(dim=0) >= 0) and torch.all(finer.diff(dim=1) >= 0)
    assert moved["other"] is state["other"]


def test_a_positional_embedding_that_is_not_a_square_grid_is_refused():
    with pytest.raises(ValueError, match="not a class token and a square grid"):
        from_pooled({POSITIONAL: torch.zeros(4, 8)})


def test_other_architectures_pass_as_they_are():
    model = torch.nn.Linear(1, 1)
    assert adapt("RN50", model) is model and preprocess_size("RN50") == {}


def test_an_unpooled_architecture_needs_a_resnet_image_tower():
    class ViTLike(torch.nn.Module):
        visual = torch.nn.Identity()

    with pytest.raises(TypeError, match="must have a ModifiedResNet image tower"):
        adapt("tipai-mini-clip-4x4", ViTLike())
