"""The CLIP tokenizer files we write for transformers must give exactly open_clip's token ids."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import open_clip
import pytest
from transformers import CLIPTokenizer

from workers.tokenizer import write_clip_tokenizer

PROMPTS = [
    "a photo of a cat",
    'Two red apples on a wooden table, 4k, "HDR"!',
    "café naïve résumé ☃ 12345 don't",
]


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip-tokenizer")
    write_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_ids_match_open_clip(hf_tokenizer, prompt):
    reference = open_clip.get_tokenizer("ViT-B-32")([prompt])[0].tolist()
    end_of_text = reference.index(hf_tokenizer.eos_token_id)
    assert hf_tokenizer(prompt).input_ids == reference[: end_of_text + 1]


def test_vocabulary_size(hf_tokenizer):
    assert len(hf_tokenizer) == 49408
    assert hf_tokenizer.model_max_length == 77
