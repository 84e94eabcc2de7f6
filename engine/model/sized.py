"""Randomly initialised Qwen2.5-VL models at real sizes, for memory and speed measurements without a model hub.

A preset copies the dimensions of a released model (optionally with fewer layers) and pads the project's
tokenizer to Qwen's 151,665 tokens, so embedding, LM head and vision tower cost what they cost in the real
model. The weights are random: these models measure, they do not answer.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from tokenizers import Tokenizer

from engine.model.tiny import _generation_config, save_processor_configs
from engine.model.tokenizer import build_tokenizer

QWEN_TOKENS = 151_665  # len(tokenizer) of Qwen2.5-VL; its embedding has 151,936 rows
QWEN_VOCAB = 151_936
VISION_3B = dict(hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3, patch_size=14,
                 spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2, window_size=112)

# name -> (text config, vision depth, tied embeddings). "qwen2.5-vl-3b-2layer" / "qwen2.5-vl-7b-2layer":
# Qwen2.5-VL-3B's / 7B's widths with 2 text and 2 vision layers; "qwen2.5-0.5b": the Qwen2.5-0.5B language model
# (24 layers) with a 2-layer Qwen2.5-VL vision tower.
PRESETS = {
    "qwen2.5-vl-3b-2layer": (dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=2,
                                  num_attention_heads=16, num_key_value_heads=2, mrope_section=[16, 24, 24]), 2, True),
    "qwen2.5-vl-7b-2layer": (dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=2,
                                  num_attention_heads=28, num_key_value_heads=4, mrope_section=[16, 24, 24]), 2, False),
    "qwen2.5-0.5b": (dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                          num_key_value_heads=2, mrope_section=[8, 12, 12]), 2, True),
}


def padded_tokenizer(n_tokens: int = QWEN_TOKENS) -> PreTrainedTokenizerFast:
    """The project tokenizer with unused vocabulary entries appended up to `n_tokens` (special ids unchanged)."""
    tok = build_tokenizer()
    spec = json.loads(tok.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    for i in range(len(tok), n_tokens):
        vocab[f"<unused_{i}>"] = i  # never produced by a merge: present, like Qwen's reserved rows
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                   **{k: getattr(tok, k) for k in ("bos_token", "eos_token", "pad_token")})
    fast.chat_template = tok.chat_template
    return fast


def sized_config(preset: str, tokenizer) -> Qwen2_5_VLConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    text, depth, tied = PRESETS[preset]
    text = dict(text)
    section = text.pop("mrope_section")
    ids = tokenizer.convert_tokens_to_ids
    pad, eos = ids("<|endoftext|>"), ids("<|im_end|>")
    text_config = dict(
        vocab_size=QWEN_VOCAB, hidden_act="silu", max_position_embeddings=32768, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": section},
        bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, **text)
    vision = dict(VISION_3B, depth=depth, out_hidden_size=text["hidden_size"], fullatt_block_indexes=[depth - 1])
    return Qwen2_5_VLConfig(text_config=text_config, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                            video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                            vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=tied)


def save_sized(path: str | Path, preset: str, seed: int = 0) -> Path:
    """Write a `preset`-sized random model (fp32), its padded tokenizer and processor configs to `path`."""
    path = Path(path)
    tokenizer = padded_tokenizer()
    config = sized_config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = _generation_config(tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    save_processor_configs(path, model.config)
    return path


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="Write a randomly initialised, real-sized Qwen2.5-VL model folder.")
    p.add_argument("preset", choices=sorted(PRESETS))
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out = save_sized(a.out, a.preset, a.seed)
    n = sum(f.stat().st_size for f in out.glob("*.safetensors")) // 4
    print(f"wrote {a.preset} ({n / 1e6:.0f}M parameters) to {out}")


if __name__ == "__main__":
    main()
