"""Shared helpers of the learner tests: a hand-built multimodal batch from real decoded clips, a reference step."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

from engine.model import expand_vision_pads, load_policy, mm_token_type_ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def real_clips(root: Path, n: int = 2) -> list:
    """`n` clips decoded by engine.video from freshly rendered synthetic videos (different sizes)."""
    from engine.data.synthetic import make_dataset
    from engine.video import FramePolicy, VideoService

    make_dataset(root, num_videos=1, width=128, height=96, fps=4.0, duration_s=2.0, codec="h264")
    path = next((root / "videos").iterdir())
    service = VideoService(device="cpu", backend="pyav", cache_bytes=0)
    policies = [FramePolicy(fps=2.0, min_frames=2, max_frames=2, max_pixels=56 * 56, min_pixels=28 * 28),
                FramePolicy(fps=2.0, min_frames=4, max_frames=4, max_pixels=56 * 84, min_pixels=28 * 28)]
    return [service.sample(str(path), policies[i % len(policies)]) for i in range(n)]


def build_batch(clips: list, seed: int = 0, video_plan=(1, 0, 2, 1, 1, 0)) -> dict[str, torch.Tensor]:
    """Right-padded learner batch: row i holds video_plan[i] videos (cycling over `clips`), text around them,
    a response of random tokens with loss_mask 1, and perturbed 'rollout' log-probs."""
    _, tok = load_policy(None)
    cfg_video = tok.convert_tokens_to_ids("<|video_pad|>")
    vstart, vend = tok.convert_tokens_to_ids("<|vision_start|>"), tok.convert_tokens_to_ids("<|vision_end|>")
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    g = torch.Generator().manual_seed(seed)
    vocab_lo, vocab_hi = 10, 200  # ordinary tokens of the tiny tokenizer
    rows, grids, pixels, spgt, responses = [], [], [], [], []
    k = 0
    for i, n_videos in enumerate(video_plan):
        prompt = torch.randint(vocab_lo, vocab_hi, (3 + i,), generator=g).tolist()
        row_grids = []
        for _ in range(n_videos):
            c = clips[k % len(clips)]
            k += 1
            prompt += [vstart, cfg_video, vend] + torch.randint(vocab_lo, vocab_hi, (2,), generator=g).tolist()
            row_grids.append(c.grid_thw)
            pixels.append(c.pixel_values)
            spgt.append(c.second_per_grid_t)
        prompt = expand_vision_pads(prompt, row_grids, 2, cfg_video)
        grids += row_grids
        response = torch.randint(vocab_lo, vocab_hi, (4 + 3 * (i % 3),), generator=g).tolist()
        rows.append(prompt)
        responses.append(response)
    length = max(len(p) + len(r) for p, r in zip(rows, responses))
    B = len(rows)
    input_ids = torch.full((B, length), tok.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(B, length, dtype=torch.long)
    loss_mask = torch.zeros(B, length)
    for i, (p, r) in enumerate(zip(rows, responses)):
        input_ids[i, :len(p) + len(r)] = torch.tensor(p + r)
        attention_mask[i, :len(p) + len(r)] = 1
        loss_mask[i, len(p):len(p) + len(r)] = 1
    types = torch.tensor([mm_token_type_ids(row, image_pad, cfg_video) for row in input_ids.tolist()])
    batch = {
        "input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask,
        "mm_token_type_ids": types * attention_mask,
        "rollout_logp": -torch.rand(B, length, generator=g) * 6 * loss_mask,
    }
    if pixels:
        batch["pixel_values_videos"] = torch.cat(pixels)
        batch["video_grid_thw"] = torch.tensor(grids, dtype=torch.long)
        batch["second_per_grid_ts"] = torch.tensor(spgt, dtype=torch.float32)
    return batch


def set_threads() -> None:
    # Two ranks share two cores: one thread each keeps them from oversubscribing.
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
