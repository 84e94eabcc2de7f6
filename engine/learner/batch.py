"""Learner inputs from trajectories: the learner builds its own batch, with its own model's ids and position rule.

A sample (engine/rollout/batch.py `Sample`, or anything with the same fields) is `prompt_ids + response_ids`;
its response interleaves the model's tokens (mask 1, a rollout log-prob each) with what the engine injected
between turns (mask 0, log-prob 0). `learner_batch` gives right-padded [B, L] tensors:

  input_ids, attention_mask, loss_mask (float), rollout_logp (fp32, 0 off the mask),
  mm_token_type_ids (0 text, 2 video),
  pixel_values_videos [sum patches, patch width], video_grid_thw [V, 3], second_per_grid_ts [V]
    (every video of every sample, in sequence order: prompt video first, then observations),
  position_ids [3, B, L]: M-RoPE ids by the model's own rule (engine.native), always given so the
    learner never falls back to transformers' own (different) rule,
  advantages [B] when every sample carries one (GRPO; SFT has none).

Nothing here imports the rollout: samples are read by their fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from engine.native import mrope_config, mrope_position_ids

KEY_TAGS = (("<answer>", "</answer>"), ("<tool_call>", "</tool_call>"), ("<caption>", "</caption>"))


@dataclass(frozen=True)
class BatchIds:
    """What assembling a batch needs from the policy: its pad and video token ids, and its M-RoPE settings."""

    pad: int
    video: int
    mrope: dict[str, Any]

    @classmethod
    def of(cls, tokenizer, config) -> BatchIds:
        """From a tokenizer and a transformers model config (Qwen2.5-VL / Qwen3-VL)."""
        return cls(tokenizer.pad_token_id, config.video_token_id, mrope_config(config))


def learner_batch(samples: list, ids: BatchIds) -> dict[str, torch.Tensor]:
    """Right-padded learner inputs of `samples` (keys in the module docstring)."""
    seqs = [s.prompt_ids + s.response_ids for s in samples]
    length = max(len(q) for q in seqs)
    n = len(seqs)
    input_ids = torch.full((n, length), ids.pad, dtype=torch.long)
    attention_mask = torch.zeros((n, length), dtype=torch.long)
    loss_mask = torch.zeros((n, length), dtype=torch.float32)
    old_logp = torch.zeros((n, length), dtype=torch.float32)
    for i, (s, q) in enumerate(zip(samples, seqs)):
        p, r = len(s.prompt_ids), len(s.response_ids)
        input_ids[i, : len(q)] = torch.tensor(q)
        attention_mask[i, : len(q)] = 1
        loss_mask[i, p : p + r] = torch.tensor(s.response_mask, dtype=torch.float32)
        old_logp[i, p : p + r] = torch.tensor(s.response_logprobs, dtype=torch.float32)
    types = (input_ids == ids.video).long() * 2
    out = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "loss_mask": loss_mask,
        "rollout_logp": old_logp,
        "mm_token_type_ids": types,
    }
    videos = [v for s in samples for v in s.videos]
    if videos:
        out["pixel_values_videos"] = torch.cat([v.pixel_values for v in videos])
        out["video_grid_thw"] = torch.tensor([v.grid_thw for v in videos], dtype=torch.long)
        out["second_per_grid_ts"] = torch.tensor([v.second_per_grid_t for v in videos], dtype=torch.float32)
    out["position_ids"], _ = mrope_position_ids(
        input_ids, types, None, out.get("video_grid_thw"), out.get("second_per_grid_ts"), attention_mask,
        **ids.mrope)
    return out


def weight_key_spans(input_ids: torch.Tensor, loss_mask: torch.Tensor, tokenizer, key_weight: float) -> torch.Tensor:
    """loss_mask with every model token from an opening key tag (<answer>, <tool_call>, <caption>) through its
    closing tag weighted key_weight: SFT's one answer letter and call arguments are not drowned by the prose."""
    if key_weight == 1.0:
        return loss_mask
    tag = tokenizer.convert_tokens_to_ids
    weights = loss_mask.clone()
    for open_tag, close_tag in KEY_TAGS:
        o, c = tag(open_tag), tag(close_tag)
        opened = torch.cumsum((input_ids == o).long(), 1) - torch.cumsum((input_ids == c).long(), 1)
        inside = (opened > 0) | (input_ids == c)
        weights = torch.where(inside & (loss_mask > 0), loss_mask * key_weight, weights)
    return weights
