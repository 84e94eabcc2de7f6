"""Tokenizer: single-token specials and tags, lossless round-trips, deterministic training."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from engine.model.tokenizer import (EOS_TOKEN, PAD_TOKEN, REASONING_TAGS, SPECIAL_TOKENS,
                                    VOCAB_SIZE, build_tokenizer)

REPO = Path(__file__).resolve().parents[2]
ALL_TAGS = SPECIAL_TOKENS + REASONING_TAGS
TEXTS = [
    "",
    "A small red circle moves from the left to the right between 01:05-02:10.",
    "<time>00:03-00:07</time> <caption>a blue ball bounces</caption> <think>so B</think> <answer>B</answer>",
    '<tool_call>\n{"name": "frame_zoom", "arguments": {"start": 3.5, "end": 7.0}}\n</tool_call>',
    '{"name": "spatial_zoom", "arguments": {"time": 12.25, "bbox": [0.1, 0.2, 0.55, 0.9]}}',
    "Options:\nA. red square\nB. green star\nC. 12\nD. none of the above",
    "naïve café — 日本語のビデオ 🎥🔴➡️ Ünïcödé",
    "e\u0301 vs \u00e9 (decomposed vs composed must both survive)",
    "  leading and trailing spaces  \t\ttabs\r\nwindows newline\n\n\n",
    "zero\x00byte and \U0010ffff max code point",
    "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>What happens?<|im_end|>",
    "glued<think>tags</think>and<answer>C</answer>.",
    "1234567890 3.14159 -42 1e-5 0x1F 99%",
]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_vocab_size_and_ids(tok):
    assert len(tok) == VOCAB_SIZE
    ids = tok.convert_tokens_to_ids(ALL_TAGS)
    assert len(set(ids)) == len(ALL_TAGS)
    # Added after the learned vocabulary, in the listed order (Qwen's layout).
    assert ids == list(range(VOCAB_SIZE - len(ALL_TAGS), VOCAB_SIZE))
    assert tok.pad_token == PAD_TOKEN and tok.eos_token == EOS_TOKEN
    assert tok.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")


@pytest.mark.parametrize("tag", ALL_TAGS)
def test_each_tag_is_one_token(tok, tag):
    tag_id = tok.convert_tokens_to_ids(tag)
    assert tok.encode(tag, add_special_tokens=False) == [tag_id]
    # Also when glued to words and digits on both sides.
    ids = tok.encode(f"x9{tag}y:", add_special_tokens=False)
    assert ids.count(tag_id) == 1
    assert tok.decode(ids) == f"x9{tag}y:"


def test_tags_survive_skip_special_but_control_tokens_do_not(tok):
    text = "<|im_start|>assistant\n<think>hm</think><answer>A</answer><|im_end|>"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\n<think>hm</think><answer>A</answer>"


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_varied_text(tok, text):
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    # Token pieces concatenate back to the text: nothing dropped or duplicated between tokens.
    assert b"".join(_token_bytes(tok, i) for i in ids) == text.encode("utf-8")


def _token_bytes(tok, token_id: int) -> bytes:
    # Byte-level BPE: each vocab symbol stands for bytes via the GPT-2 byte<->unicode table.
    table = {ch: b for b, ch in enumerate(_gpt2_byte_chars())}
    piece = tok.convert_ids_to_tokens(token_id)
    if piece in ALL_TAGS:
        return piece.encode("utf-8")
    return bytes(table[c] for c in piece)


def _gpt2_byte_chars() -> list[str]:
    # Independent re-statement of GPT-2's bytes_to_unicode(): printable bytes map to themselves,
    # the rest to code points 256+ in byte order.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def test_every_byte_symbol_in_vocab(tok):
    # All 256 byte symbols are in the vocabulary, so no input can ever fall out of it.
    vocab = tok.get_vocab()
    assert all(ch in vocab for ch in _gpt2_byte_chars())


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_round_trip_any_text(tok, text):
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_digits_are_single_tokens(tok):
    # Qwen's split puts every digit in its own token, so timestamps stay compositional.
    ids = tok.encode("01:05-02:10", add_special_tokens=False)
    pieces = [tok.decode([i]) for i in ids]
    assert pieces == list("01:05-02:10")


def test_bpe_learned_the_domain(tok):
    # Training did merge: frequent corpus words are one token, rare strings are not.
    for word in [" the", " video", " seconds", " circle", "frame"]:
        assert len(tok.encode(word, add_special_tokens=False)) == 1, word
    assert len(tok.encode(" xqzjv", add_special_tokens=False)) > 1


def test_left_padding_uses_endoftext(tok):
    batch = tok(["a", "a red circle moves"], padding=True)
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    short, long = batch["input_ids"]
    assert len(short) == len(long)
    n_pad = len(long) - len(tok.encode("a", add_special_tokens=False))
    assert short[:n_pad] == [pad] * n_pad and batch["attention_mask"][0][:n_pad] == [0] * n_pad


def test_two_builds_identical(tok):
    again = build_tokenizer()
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    assert again.get_vocab() == tok.get_vocab()


def test_build_identical_across_processes(tok):
    # A fresh interpreter with another hash seed (Python and Rust hash maps differ per process).
    code = ("import hashlib; from engine.model.tokenizer import build_tokenizer; "
            "print(hashlib.sha256(build_tokenizer().backend_tokenizer.to_str().encode()).hexdigest())")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "TOKENIZERS_PARALLELISM": "true"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    here = hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()
    assert out.stdout.strip().splitlines()[-1] == here
