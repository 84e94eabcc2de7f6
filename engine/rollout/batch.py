"""RolloutBatch: what a rollout returns — trajectories as token ids, masks, videos, log-probs and tool traces.

A sample's sequence is `prompt_ids + response_ids`. The response interleaves what the model produced
(loss mask 1, a rollout log-prob each) with what the engine injected between turns — tool
responses, re-looked video, turn markers (loss mask 0, log-prob 0). Token-in/token-out: these are
exactly the ids the backend produced, never re-tokenised text. The learner turns samples into its own
tensors (engine/learner/batch.py); the driver sets each sample's `advantage` before they go there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

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

    @property
    def tool_calls(self) -> int:
        """Tool calls the model made: every <tool_call>, well-formed or not. Re-looks and refused requests are
        not tool calls (the one count the trainer, the evaluation and the report share)."""
        return sum(e.kind in ("tool", "error") for e in self.tool_trace)

    @property
    def relooks(self) -> int:
        """Grounded re-looks: closed <time> spans whose frames were injected."""
        return sum(e.kind == "relook" for e in self.tool_trace)


@dataclass
class RolloutBatch:
    samples: list[Sample]
    group_size: int

    def set_advantages(self, advantages: torch.Tensor) -> None:
        if advantages.numel() != len(self.samples):
            raise ValueError(f"{advantages.numel()} advantages for {len(self.samples)} samples")
        for s, a in zip(self.samples, advantages.tolist()):
            s.advantage = float(a)
