"""Numeric-match reward: the number in <answer> against the ground truth, within a relative tolerance."""
from __future__ import annotations

from engine.data.answers import parse_number
from engine.reward.parse import extract_answer

__all__ = ["answer_numbers", "numeric_reward", "parse_number"]


def answer_numbers(response: str, answer: float | str) -> tuple[float, float | None]:
    """(the ground truth's number, the first number in the response's last <answer> or None)."""
    want = float(answer) if not isinstance(answer, str) else parse_number(answer)
    if want is None:
        raise ValueError(f"the ground truth {answer!r} holds no number")
    got_text = extract_answer(response)
    return want, parse_number(got_text) if got_text is not None else None


def numeric_reward(response: str, answer: float | str, rel_tol: float = 0.0, abs_tol: float = 1e-9) -> float:
    """1.0 when the first number inside the last <answer> equals `answer` within max(rel_tol*|answer|, abs_tol)."""
    want, got = answer_numbers(response, answer)
    if got is None:
        return 0.0
    return 1.0 if abs(got - want) <= max(rel_tol * abs(want), abs_tol) else 0.0
