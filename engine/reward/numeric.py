"""Numeric-match reward: the number in <answer> against the ground truth, within a relative tolerance."""
from __future__ import annotations

import math
import re

from engine.reward.parse import extract_answer

# One optional sign, digits with an optional fraction; commas as thousands separators are dropped first.
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?")


def parse_number(text: str) -> float | None:
    """The first number in `text` ('1,234.5' -> 1234.5), or None when there is none or it is not finite."""
    m = _NUMBER.search(text.replace(",", ""))
    if m is None:
        return None
    value = float(m.group(0))
    return value if math.isfinite(value) else None


def numeric_reward(response: str, answer: float | str, rel_tol: float = 0.0, abs_tol: float = 1e-9) -> float:
    """1.0 when the first number inside the last <answer> equals `answer` within max(rel_tol*|answer|, abs_tol)."""
    want = float(answer) if not isinstance(answer, str) else parse_number(answer)
    if want is None:
        raise ValueError(f"numeric_reward: the ground truth {answer!r} holds no number")
    got_text = extract_answer(response)
    got = parse_number(got_text) if got_text is not None else None
    if got is None:
        return 0.0
    return 1.0 if abs(got - want) <= max(rel_tol * abs(want), abs_tol) else 0.0
