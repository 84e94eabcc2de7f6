"""Tiny Qwen2.5-VL: config shape, seeded init, offline save/load, generate with video on CPU."""
import socket

import numpy as np
import pytest
import torch
from transformers import (AutoImageProcessor, AutoTokenizer, Qwen2_5_VLConfig,
                          Qwen2_5_VLForConditionalGeneration)

from engine.model.tiny import build_tiny_model, save_tiny, tiny_config
from engine.video.spec import QWEN2_5_VL
from engine.model.video_tokens import expand_vision_pads, mm_token_type_ids
from tests.native.mrope_original import original_rope_config, original_rope_index

GRID = (2, 4, 4)  # (t, h, w) in patches: 4 frames of 56x56 pixels


@pytest.fixture(scope="module")
def built():
    return build_tiny_model(seed=0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "m", seed=0)


@pytest.fixture
def no_network(monkeypatch):
    # Any attempt to reach a hub fails loudly instead of hanging or silently downloading.
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def patchify(frames: torch.Tensor, temporal: int = 2, patch: int = 14, merge: int = 2):
    """[T, C, H, W] normalised frames -> ([t*h*w, C*temporal*patch*patch], (t, h, w)).

    Rows in Qwen2-VL processor order: merge windows contiguous, each row (C, temporal, p, p).
    """
    T, C, H, W = frames.shape
    t, h, w = T // temporal, H // patch, W // patch
    x = frames.reshape(t, temporal, C, h // merge, merge, patch, w // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * h * w, C * temporal * patch * patch), (t, h, w)


def video_inputs(tok, model, frames: torch.Tensor, seconds_per_grid: float = 1.0):
    """Chat prompt with one video, pads expanded, plus every tensor generate() needs."""
    pixels, grid = patchify(frames)
    msgs = [{"role": "user", "content": [{"type": "video"},
                                          {"type": "text", "text": "What moves? A or B?"}]}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)["input_ids"]
    vid = model.config.video_token_id
    ids = expand_vision_pads(ids, [grid], model.config.vision_config.spatial_merge_size, vid)
    return dict(
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        pixel_values_videos=pixels,
        video_grid_thw=torch.tensor([grid]),
        second_per_grid_ts=torch.tensor([seconds_per_grid]),
        mm_token_type_ids=torch.tensor([mm_token_type_ids(ids, model.config.image_token_id, vid)]),
    )


def frames(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2 * GRID[0], 3, 14 * GRID[1], 14 * GRID[2], generator=g)


def test_config_is_engine_friendly(built):
    model, tok = built
    cfg = model.config
    text, vision = cfg.text_config, cfg.vision_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert head_dim == 64 and vision.hidden_size // vision.num_heads == 32
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert vision.out_hidden_size == text.hidden_size
    # Qwen2.5-VL's real values, so M-RoPE time spacing and token counts match the big models.
    assert (vision.tokens_per_second, vision.patch_size, vision.spatial_merge_size,
            vision.temporal_patch_size) == (2, 14, 2, 2)
    assert text.vocab_size == len(tok) == model.get_input_embeddings().num_embeddings
    ids = tok.convert_tokens_to_ids
    assert (cfg.image_token_id, cfg.video_token_id) == (ids("<|image_pad|>"), ids("<|video_pad|>"))
    assert (cfg.vision_start_token_id, cfg.vision_end_token_id) == \
        (ids("<|vision_start|>"), ids("<|vision_end|>"))
    assert text.eos_token_id == ids("<|im_end|>") and text.pad_token_id == ids("<|endoftext|>")
    assert model.generation_config.eos_token_id == [ids("<|im_end|>"), ids("<|endoftext|>")]
    # Survives a JSON round trip as the same config (what save/load relies on).
    again = Qwen2_5_VLConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() == tiny_config(tok).to_dict()
    assert not model.training


def test_seeded_init_is_bit_identical_and_private(built):
    model, _ = built
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    same, _ = build_tiny_model(seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)  # caller's RNG untouched
    other, _ = build_tiny_model(seed=1)
    a, b, c = model.state_dict(), same.state_dict(), other.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Another seed changes every randomly initialised matrix (norm weights are constant ones).
    matrices = [k for k in a if a[k].dim() >= 2]
    assert matrices and all(not torch.equal(a[k], c[k]) for k in matrices)
    assert all(torch.isfinite(v).all() for v in a.values())


def test_bf16_is_rounded_fp32(built):
    model, _ = built
    half, _ = build_tiny_model(seed=0, dtype=torch.bfloat16)
    a, b = model.state_dict(), half.state_dict()
    assert all(b[k].dtype == torch.bfloat16 and torch.equal(b[k], a[k].to(torch.bfloat16)) for k in a)


def test_save_layout(saved):
    names = {p.name for p in saved.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json"} <= names


def test_load_offline_identical(built, saved, no_network):
    model, tok = built
    tok2 = AutoTokenizer.from_pretrained(saved, local_files_only=True)
    model2 = Qwen2_5_VLForConditionalGeneration.from_pretrained(saved, local_files_only=True)
    assert tok2.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    assert tok2.chat_template == tok.chat_template
    assert (tok2.pad_token, tok2.eos_token) == (tok.pad_token, tok.eos_token)
    a, b = model.state_dict(), model2.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert model2.generation_config.eos_token_id == model.generation_config.eos_token_id
    prompt = tok2.apply_chat_template([{"role": "user", "content": "Which shape moves first?"}],
                                      add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
    kw = dict(max_new_tokens=12, do_sample=False, min_new_tokens=12)
    with torch.no_grad():
        out1 = model.generate(**prompt, **kw)
        out2 = model2.generate(**prompt, **kw)
    assert out1.shape == (1, prompt["input_ids"].shape[1] + 12)
    assert torch.equal(out1, out2)
    # Greedy: each generated token is the argmax of a plain forward pass over the prefix.
    with torch.no_grad():
        logits = model2(input_ids=out1[:, :-1]).logits[0]
    n = prompt["input_ids"].shape[1]
    assert torch.equal(logits[n - 1:].argmax(-1), out1[0, n:])


def test_saved_preprocessor_matches_patchify(saved):
    # The saved preprocessor config loads with transformers' own Qwen2-VL image processor, and its
    # pixel_values equal our patchify of the same image: the patch layout and normalisation agree.
    proc = AutoImageProcessor.from_pretrained(saved, local_files_only=True)
    img = np.random.default_rng(0).integers(0, 256, size=(56, 84, 3), dtype=np.uint8)
    ref = proc(images=img, return_tensors="pt")
    x = torch.from_numpy(img).permute(2, 0, 1).double() / 255
    x = (x - torch.tensor(QWEN2_5_VL.image_mean, dtype=torch.float64)[:, None, None]) / \
        torch.tensor(QWEN2_5_VL.image_std, dtype=torch.float64)[:, None, None]
    ours, grid = patchify(torch.stack([x, x]))  # an image is one frame repeated temporal_patch times
    assert ref["image_grid_thw"].tolist() == [list(grid)]
    assert torch.allclose(ref["pixel_values"].double(), ours, atol=1e-4)


def test_generate_with_video(built):
    model, tok = built
    inputs = video_inputs(tok, model, frames(0))
    n_prompt = inputs["input_ids"].shape[1]
    vid = model.config.video_token_id
    assert (inputs["input_ids"] == vid).sum().item() == GRID[0] * GRID[1] * GRID[2] // 4
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert out.shape == (1, n_prompt + 8)
    assert torch.equal(out[:, :n_prompt], inputs["input_ids"])
    assert not (out[0, n_prompt:] == vid).any()


def test_video_content_and_timing_reach_the_logits(built):
    model, tok = built

    def last_logits(video, spg):
        with torch.no_grad():
            return model(**video_inputs(tok, model, video, spg)).logits[0, -1]

    base = last_logits(frames(0), 1.0)
    assert torch.equal(base, last_logits(frames(0), 1.0))
    assert not torch.allclose(base, last_logits(frames(1), 1.0))  # pixels are used
    assert not torch.allclose(base, last_logits(frames(0), 3.0))  # seconds move M-RoPE time


def test_video_positions_follow_mrope(built):
    # Reference positions for the video block, from the Qwen2.5-VL paper's rule: temporal id
    # = grid index * tokens_per_second * seconds_per_grid, spatial ids = merged row / column.
    model, tok = built
    spg = 1.5
    inputs = video_inputs(tok, model, frames(0), spg)
    pos, _ = original_rope_index(
        inputs["input_ids"], None, inputs["video_grid_thw"], inputs["second_per_grid_ts"],
        **original_rope_config(model.config))
    ids = inputs["input_ids"][0]
    first = int((ids == model.config.video_token_id).nonzero()[0])
    assert torch.equal(pos[:, 0, :first], torch.arange(first).expand(3, -1))  # text before: 1-D
    t, h, w = GRID[0], GRID[1] // 2, GRID[2] // 2
    tps = model.config.vision_config.tokens_per_second
    ref = [(first + int(i * tps * spg), first + j, first + k)
           for i in range(t) for j in range(h) for k in range(w)]
    got = pos[:, 0, first:first + t * h * w].T.tolist()
    assert got == [list(r) for r in ref]
