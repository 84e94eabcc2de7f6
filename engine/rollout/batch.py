"""RolloutBatch: what the rollout hands the learner — token ids, masks, video inputs, log-probs, rewards."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class VideoInput:
    """One video segment as the model consumes it (Qwen2.5-VL patches)."""

    pixel_values: torch.Tensor  # [t*h*w, 3*2*14*14]
    grid_thw: tuple[int, int, int]
    second_per_grid_t: float


@dataclass
class Sample:
    """One trajectory: prompt ids, the ids the model produced (token-in/token-out) and their log-probs."""

    group: int
    row_id: str
    prompt_ids: list[int]
    response_ids: list[int]
    response_logprobs: list[float]
    video: VideoInput | None
    response_text: str = ""
    finished: bool = True  # False when the token budget ran out before end-of-turn
    reward: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RolloutBatch:
    samples: list[Sample]
    group_size: int

    def tensors(self, pad_id: int, video_token_id: int) -> dict[str, torch.Tensor]:
        """Right-padded learner inputs. loss_mask marks response tokens, aligned with input_ids."""
        seqs = [s.prompt_ids + s.response_ids for s in self.samples]
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
            loss_mask[i, p : p + r] = 1.0
            old_logp[i, p : p + r] = torch.tensor(s.response_logprobs, dtype=torch.float32)
        out = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "loss_mask": loss_mask,
            "rollout_logp": old_logp,
            "mm_token_type_ids": (input_ids == video_token_id).long() * 2,
        }
        videos = [s.video for s in self.samples if s.video is not None]
        if videos:
            out["pixel_values_videos"] = torch.cat([v.pixel_values for v in videos])
            out["video_grid_thw"] = torch.tensor([v.grid_thw for v in videos], dtype=torch.long)
            out["second_per_grid_ts"] = torch.tensor([v.second_per_grid_t for v in videos], dtype=torch.float32)
        return out
