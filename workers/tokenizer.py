"""Real CLIP BPE tokenizer files for transformers, built from the vocabulary open_clip ships.

Stable Diffusion's text encoder uses the same BPE as OpenAI CLIP. open_clip bundles it as a merges list, so the tiny
built-in pipeline gets a real tokenizer without downloading anything.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from open_clip.tokenizer import bytes_to_unicode, default_bpe

CONTEXT_LENGTH = 77
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# open_clip's SimpleTokenizer keeps this many merges from the file; 256 bytes + 256 end-of-word bytes + merges
# + 2 specials = 49408, the vocab size every CLIP text encoder is trained with.
_MERGE_COUNT = 49152 - 256 - 2


def _merges() -> list[str]:
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    # The first line of the file is a version header, not a merge.
    return lines[1 : _MERGE_COUNT + 1]


def _vocab(merges: list[str]) -> dict[str, int]:
    # Same order as open_clip.tokenizer.SimpleTokenizer, so token ids agree.
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    return {token: index for index, token in enumerate(tokens)}


def write_clip_tokenizer(folder: Path, context_length: int = CONTEXT_LENGTH) -> None:
    """Write vocab.json, merges.txt and configs so ``CLIPTokenizer.from_pretrained(folder)`` loads; pipelines pad
    prompts to ``context_length`` tokens, which must match the text encoder's position embeddings."""
    folder.mkdir(parents=True, exist_ok=True)
    merges = _merges()
    (folder / "vocab.json").write_text(json.dumps(_vocab(merges), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": context_length, **specials}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
