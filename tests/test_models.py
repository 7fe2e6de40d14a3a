"""The tiny built-in models, the generator and the scorer, on the CPU and offline."""

import io
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from huggingface_hub import constants as hub_constants
from PIL import Image

from workers.devices import dtype_for, pick_device, usable_device
from workers.errors import ModelUnavailable
from workers.generation import load_generator
from workers.model_cache import get_scorer
from workers.scoring import grid_boxes, load_scorer, score_01
from workers.tiny import ensure_tiny_sd

LONG_PROMPT = " ".join(f"word{i}" for i in range(200))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def generator(models_dir):
    return load_generator("builtin:tiny-sd", "cpu", models_dir)


@pytest.fixture(scope="module")
def scorer(models_dir):
    return load_scorer("tipai-tiny-clip@builtin", "cpu", models_dir)


@pytest.fixture(scope="module")
def noise_image():
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_offline():
    # Everything below must run without the network; a test that could download weights is a bug.
    assert hub_constants.HF_HUB_OFFLINE


def test_devices():
    assert pick_device("cpu") == "cpu"
    assert pick_device("cuda:1") == "cuda:1"
    assert pick_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="mps"):
        pick_device("mps")
    assert dtype_for("cpu") == torch.float32
    assert dtype_for("cuda:0") == torch.float16


def test_a_usable_device_is_one_torch_can_use_here():
    assert usable_device("cpu") == "cpu"
    assert usable_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            usable_device("cuda:0")
    # Past the GPUs there are, with some or none.
    with pytest.raises(ValueError, match="cuda:99 was asked for"):
        usable_device("cuda:99")


def test_tiny_sd_is_built_identically(models_dir, generator, tmp_path):
    first, second = ensure_tiny_sd(models_dir), ensure_tiny_sd(tmp_path)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert isinstance(generator.pipe, StableDiffusionPipeline)


def test_generate_returns_requested_size(generator):
    images = generator.generate("a red cube", [0, 1], width=64, height=48, steps=2, guidance=5.0)
    assert [image.size for image in images] == [(64, 48), (64, 48)]
    assert all(isinstance(image, Image.Image) for image in images)


def test_same_seed_same_png_across_loads(generator, models_dir):
    reloaded = load_generator("builtin:tiny-sd", "cpu", models_dir)
    first = generator.generate("a red cube", [3], 64, 64, 2, 5.0)[0]
    second = reloaded.generate("a red cube", [3], 64, 64, 2, 5.0)[0]
    assert png_bytes(first) == png_bytes(second)


def test_each_seed_of_a_batch_gets_its_own_noise(generator):
    """A batch gives every seed its own generator: the images differ, and seed 1 in a batch starts from the same
    noise as seed 1 alone. (Pixel equality across batch shapes is not promised: CPU matrix kernels may sum in
    another order for another batch size; the tasks always generate one seed per call.)"""
    batched = generator.generate("a red cube", [0, 1], 64, 64, 2, 5.0)
    alone = generator.generate("a red cube", [1], 64, 64, 2, 5.0)
    assert not np.array_equal(np.asarray(batched[0]), np.asarray(batched[1]))
    difference = np.abs(np.asarray(batched[1], dtype=int) - np.asarray(alone[0], dtype=int))
    assert difference.max() <= 2


def test_generate_truncates_long_prompt(generator):
    assert generator.generate(LONG_PROMPT, [0], 64, 64, 1, 1.0)[0].size == (64, 64)


def test_scorer_returns_a_patch_per_cell(scorer, noise_image):
    result = scorer.score(noise_image, "a red cube", grid=7)
    assert len(result.patch_cosines) == 49
    assert all(isinstance(c, float) and -1.0 <= c <= 1.0 for c in [result.global_cosine, *result.patch_cosines])
    assert not result.truncated


def test_scorer_flags_truncated_prompt(scorer, noise_image):
    assert scorer.score(noise_image, LONG_PROMPT, grid=2).truncated


def test_grid_boxes_order_and_tiling():
    boxes = grid_boxes(100, 90, 7)
    assert len(boxes) == 49
    assert boxes[0][:2] == (0, 0)
    assert boxes[6][1:3] == (0, 100)
    assert boxes[48][2:] == (100, 90)
    covered = np.zeros((90, 100), dtype=int)
    for left, top, right, bottom in boxes:
        assert right > left and bottom > top
        covered[top:bottom, left:right] += 1
    assert (covered == 1).all()
    with pytest.raises(ValueError):
        grid_boxes(4, 4, 5)


def test_score_01_clips():
    assert score_01(-0.3) == 0.0
    assert score_01(0.2) == pytest.approx(0.5)
    assert score_01(0.5) == 1.0


def test_missing_hub_generator_fails_fast(models_dir):
    start = time.monotonic()
    with pytest.raises(ModelUnavailable, match="some-org/not-there"):
        load_generator("some-org/not-there", "cpu", models_dir)
    assert time.monotonic() - start < 5


def test_missing_openai_clip_fails_fast(models_dir):
    start = time.monotonic()
    with pytest.raises(ModelUnavailable) as raised:
        load_scorer("ViT-L-14@openai", "cpu", models_dir)
    assert "ViT-L-14" in str(raised.value) and "openai" in str(raised.value)
    assert time.monotonic() - start < 5


def test_missing_local_checkpoint(models_dir, tmp_path):
    with pytest.raises(ModelUnavailable, match="missing.safetensors"):
        load_scorer(f"ViT-B-32@{tmp_path / 'missing.safetensors'}", "cpu", models_dir)


def test_model_cache_loads_once(models_dir):
    assert get_scorer("tipai-tiny-clip@builtin", "cpu", models_dir) is get_scorer(
        "tipai-tiny-clip@builtin", "cpu", models_dir
    )
