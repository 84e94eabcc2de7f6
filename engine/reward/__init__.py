"""Rewards for a response to a dataset row: accuracy (MCQ letter or temporal IoU) plus format."""
from __future__ import annotations

from dataclasses import dataclass

from engine.reward.accuracy import grounding_reward, mcq_reward, temporal_iou
from engine.reward.format import format_reward

__all__ = ["Reward", "score", "mcq_reward", "grounding_reward", "temporal_iou", "format_reward"]


@dataclass(frozen=True)
class Reward:
    accuracy: float
    format: float
    total: float


def score(response: str, row, accuracy_weight: float = 1.0, format_weight: float = 1.0) -> Reward:
    """Score one response against a QARow (`kind` "mcq" uses `answer`, "grounding" uses `answer_span_s`)."""
    if row.kind == "mcq":
        acc = mcq_reward(response, row.answer)
    elif row.kind == "grounding":
        acc = grounding_reward(response, tuple(row.answer_span_s))
    else:
        raise ValueError(f"row {row.id}: unknown question kind {row.kind!r}")
    fmt = format_reward(response)
    return Reward(accuracy=acc, format=fmt, total=accuracy_weight * acc + format_weight * fmt)
