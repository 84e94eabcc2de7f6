"""Accuracy rewards: multiple-choice letter match and temporal IoU for grounding answers."""
from __future__ import annotations

import re

from engine.reward.parse import extract_answer, parse_span

_LETTER = re.compile(r"^\(?([A-Za-z])\)?(?:[.):]|\s|$)")


def mcq_reward(response: str, answer: str) -> float:
    """1.0 when the <answer> starts with the right option letter ('B', '(B)', 'B.', 'B) text')."""
    got = extract_answer(response)
    if got is None:
        return 0.0
    m = _LETTER.match(got)
    return 1.0 if m is not None and m.group(1).upper() == answer.strip().upper() else 0.0


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two [start, end] intervals; 0 for empty or inverted ones."""
    if a[1] < a[0] or b[1] < b[0]:
        return 0.0
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else float(a == b)


def grounding_reward(response: str, answer_span: tuple[float, float]) -> float:
    """Temporal IoU between the span in <answer> and the ground-truth span."""
    got = extract_answer(response)
    span = parse_span(got) if got is not None else None
    return temporal_iou(span, answer_span) if span is not None else 0.0
