"""Pulls the final answer and time spans out of a model response (linear-time regexes only)."""
from __future__ import annotations

import re

_ANSWER = re.compile(r"<answer>([^<]*)</answer>")
_CLOCK = r"(\d{1,3}):([0-5]?\d(?:\.\d+)?)"
_SPAN_CLOCK = re.compile(rf"^\s*{_CLOCK}\s*-\s*{_CLOCK}\s*$")
_SPAN_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:(?:s|sec|seconds)\s*)?-\s*(\d+(?:\.\d+)?)\s*(?:(?:s|sec|seconds)\s*)?$")


def extract_answer(text: str) -> str | None:
    """The content of the last <answer>...</answer>, stripped; None when there is none."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


def parse_span(text: str) -> tuple[float, float] | None:
    """'MM:SS-MM:SS' or 'a-b' (seconds) -> (start_s, end_s); None when it is neither."""
    m = _SPAN_CLOCK.match(text)
    if m:
        a = int(m.group(1)) * 60 + float(m.group(2))
        b = int(m.group(3)) * 60 + float(m.group(4))
        return a, b
    m = _SPAN_SECONDS.match(text)
    if m:
        return float(m.group(1)), float(m.group(2))
    return None
