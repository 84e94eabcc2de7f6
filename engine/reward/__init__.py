"""Rewards for a response to a dataset row: accuracy (MCQ letter, numeric match or temporal IoU), format,
optional tool-use shaping, combined by config weights."""
from __future__ import annotations

from dataclasses import dataclass

from engine.reward.accuracy import grounding_reward, mcq_reward, temporal_iou
from engine.reward.format import format_reward
from engine.reward.numeric import numeric_reward, parse_number
from engine.reward.tool_use import tool_use_reward

__all__ = ["Reward", "score", "score_sample", "mcq_reward", "grounding_reward", "temporal_iou", "format_reward",
           "numeric_reward", "parse_number", "tool_use_reward"]


@dataclass(frozen=True)
class Reward:
    accuracy: float
    format: float
    total: float
    tool: float = 0.0


def accuracy_reward(response: str, row, numeric_tolerance: float = 0.0) -> float:
    """The accuracy term for a row: "mcq" uses `answer`, "grounding" `answer_span_s`, "numeric" `answer`."""
    if row.kind == "mcq":
        return mcq_reward(response, row.answer)
    if row.kind == "grounding":
        return grounding_reward(response, tuple(row.answer_span_s))
    if row.kind == "numeric":
        return numeric_reward(response, row.answer, rel_tol=numeric_tolerance)
    raise ValueError(f"row {row.id}: unknown question kind {row.kind!r}")


def score(response: str, row, accuracy_weight: float = 1.0, format_weight: float = 1.0, *,
          tool_weight: float = 0.0, tool_calls: tuple[int, int] = (0, 0), format_text: str | None = None,
          numeric_tolerance: float = 0.0) -> Reward:
    """accuracy_weight * accuracy + format_weight * format + tool_weight * tool_use.

    `format_text` is what the format rule reads (default: the whole response); an agent's
    trajectory passes its last turn, the one that must hold the final answer block.
    `tool_calls` = (succeeded, failed) for the tool-use term.
    """
    acc = accuracy_reward(response, row, numeric_tolerance)
    fmt = format_reward(response if format_text is None else format_text)
    tool = tool_use_reward(*tool_calls) if tool_weight else 0.0
    return Reward(accuracy=acc, format=fmt, tool=tool, total=accuracy_weight * acc + format_weight * fmt + tool_weight * tool)


def score_sample(sample, row, cfg, agent: bool = False) -> Reward:
    """Score a rollout Sample with a RewardConfig: agents are format-scored on their last turn."""
    ok = sum(1 for e in sample.tool_trace if e.kind == "tool" and e.ok)
    failed = sum(1 for e in sample.tool_trace if e.kind in ("tool", "error") and not e.ok)
    return score(sample.response_text, row, cfg.accuracy_weight, cfg.format_weight, tool_weight=cfg.tool_weight,
                 tool_calls=(ok, failed), format_text=sample.final_text if agent else None,
                 numeric_tolerance=cfg.numeric_tolerance)
