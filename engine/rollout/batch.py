"""RolloutBatch: the contract between rollout and learner — trajectories as token ids, masks, videos and log-probs.

A sample's sequence is `prompt_ids + response_ids`. The response interleaves what the model produced
(loss mask 1, a rollout log-prob each) with what the engine injected between turns — tool
responses, re-looked video, turn markers (loss mask 0, log-prob 0). Token-in/token-out: these are
exactly the ids the backend produced, never re-tokenised text.

`tensors(pad_id, video_token_id)` gives the learner right-padded [B, L] tensors:
  input_ids, attention_mask, loss_mask (float), rollout_logp (fp32, 0 off the mask),
  mm_token_type_ids (0 text, 1 image, 2 video),
  pixel_values_videos [sum patches, 1176], video_grid_thw [V, 3], second_per_grid_ts [V]
    (every video of every sample, in sequence order: prompt video first, then observations),
  position_ids [3, B, L]: M-RoPE ids by the original Qwen2.5-VL rule (engine.native), always given so
    the learner never falls back to transformers' own (different) rule; `mrope` holds the model's settings.
Rewards and advantages live on the samples (`rewards()`, `set_advantages`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from engine.native import mrope_position_ids
from engine.video.types import VideoInput  # noqa: F401  (re-exported: part of the batch contract)


@dataclass
class ToolEvent:
    """One entry of a trajectory's tool trace: what was called, what came back, how long it took."""

    turn: int
    # "tool" (a <tool_call>), "relook" (a closed <time> span), "error" (unparseable output), "refused" (the backend
    # could not run the sample's next request: too long for the engine, a video it cannot take)
    kind: str
    name: str | None  # the tool's name when one could be read
    arguments: Any  # the parsed arguments, or the raw text when parsing failed
    ok: bool
    result: str  # the observation's text (what the model was shown)
    error: str | None = None  # error category/message when not ok
    visual_tokens: int = 0  # merged visual tokens the observation injected
    seconds: float = 0.0  # wall time of the tool's execution (and tokenisation)


@dataclass
class Sample:
    """One trajectory (see the module docstring for the layout)."""

    group: int
    row_id: str
    prompt_ids: list[int]
    response_ids: list[int]
    response_logprobs: list[float]
    video: VideoInput | None = None  # the prompt's video; `videos` is authoritative when set
    response_text: str = ""  # the model's own text, all turns, observations left out
    finished: bool = True  # False when a budget ran out before the model ended its answer
    reward: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    response_mask: list[int] | None = None  # 1 on model tokens, 0 on injected ones; None = all model
    videos: list[VideoInput] = field(default_factory=list)
    finish_reason: str = "stop"  # stop | length | max_turns | max_tokens_per_turn | max_total_tokens | max_visual_tokens
    # | placeholder_token (the model sampled an id only the engine inserts; see rollout/backend.py)
    seed: int = 0  # the first turn's sampling seed
    turns: int = 1  # assistant turns generated
    final_text: str = ""  # the model's text in its last turn (after the last observation)
    turn_texts: list[str] = field(default_factory=list)  # the model's text of each assistant turn, in order
    tool_trace: list[ToolEvent] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # bad-output categories -> count
    advantage: float = 0.0

    def __post_init__(self) -> None:
        if not self.videos and self.video is not None:
            self.videos = [self.video]
        if self.response_mask is None:
            self.response_mask = [1] * len(self.response_ids)
        if not (len(self.response_ids) == len(self.response_logprobs) == len(self.response_mask)):
            raise ValueError(f"sample {self.row_id}: response ids, log-probs and mask differ in length "
                             f"({len(self.response_ids)}, {len(self.response_logprobs)}, {len(self.response_mask)})")

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.response_ids

    @property
    def generated_tokens(self) -> int:
        return sum(self.response_mask)


@dataclass
class RolloutBatch:
    samples: list[Sample]
    group_size: int
    mrope: dict[str, Any]  # engine.native.mrope_config(model.config): the settings of the position ids

    def rewards(self) -> torch.Tensor:
        return torch.tensor([s.reward for s in self.samples], dtype=torch.float32)

    def set_advantages(self, advantages: torch.Tensor) -> None:
        if advantages.numel() != len(self.samples):
            raise ValueError(f"{advantages.numel()} advantages for {len(self.samples)} samples")
        for s, a in zip(self.samples, advantages.tolist()):
            s.advantage = float(a)

    def tensors(self, pad_id: int, video_token_id: int, image_token_id: int | None = None) -> dict[str, torch.Tensor]:
        """Right-padded learner inputs (keys in the module docstring)."""
        seqs = [s.ids for s in self.samples]
        length = max(len(q) for q in seqs)
        n = len(seqs)
        input_ids = torch.full((n, length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((n, length), dtype=torch.long)
        loss_mask = torch.zeros((n, length), dtype=torch.float32)
        old_logp = torch.zeros((n, length), dtype=torch.float32)
        for i, (s, q) in enumerate(zip(self.samples, seqs)):
            p, r = len(s.prompt_ids), len(s.response_ids)
            input_ids[i, : len(q)] = torch.tensor(q)
            attention_mask[i, : len(q)] = 1
            loss_mask[i, p : p + r] = torch.tensor(s.response_mask, dtype=torch.float32)
            old_logp[i, p : p + r] = torch.tensor(s.response_logprobs, dtype=torch.float32)
        types = (input_ids == video_token_id).long() * 2
        if image_token_id is not None:
            types += (input_ids == image_token_id).long()
        out = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "loss_mask": loss_mask,
            "rollout_logp": old_logp,
            "mm_token_type_ids": types,
        }
        videos = [v for s in self.samples for v in s.videos]
        if videos:
            out["pixel_values_videos"] = torch.cat([v.pixel_values for v in videos])
            out["video_grid_thw"] = torch.tensor([v.grid_thw for v in videos], dtype=torch.long)
            out["second_per_grid_ts"] = torch.tensor([v.second_per_grid_t for v in videos], dtype=torch.float32)
        out["position_ids"], _ = mrope_position_ids(
            input_ids, types, None, out.get("video_grid_thw"), out.get("second_per_grid_ts"), attention_mask,
            **self.mrope)
        return out
