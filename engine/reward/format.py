"""Format rewards, one per response layout (reward.format_layout).

"video_thinker" (Video-Thinker's):
The response earns 1.0 when, ignoring surrounding whitespace, it is one or more segment blocks
    <time>MM:SS-MM:SS</time> <caption>...</caption> <think>...</think>
followed by exactly one <answer>...</answer> and nothing else; the time span must parse with
start <= end, and no block may be empty. Anything else earns 0.0.

"r1" (DeepSeek-R1 / Video-R1's): the response is exactly <think>...</think> then <answer>...</answer>,
whitespace around them allowed, the answer not empty.
"""
from __future__ import annotations

import re

from engine.reward.parse import parse_span

_BLOCK = re.compile(r"\s*<time>([^<]*)</time>\s*<caption>([^<]*)</caption>\s*<think>([^<]*)</think>")
_ANSWER = re.compile(r"\s*<answer>([^<]*)</answer>\s*")


_R1 = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S)
LAYOUTS = ("video_thinker", "r1")


def format_reward(response: str, layout: str = "video_thinker") -> float:
    if layout == "r1":
        m = _R1.fullmatch(response)
        ok = m is not None and "<answer>" not in m.group(1) and "<answer>" not in m.group(2) and m.group(2).strip()
        return 1.0 if ok else 0.0
    if layout != "video_thinker":
        raise ValueError(f"unknown format layout {layout!r}; expected one of {LAYOUTS}")
    pos, blocks = 0, 0
    while m := _BLOCK.match(response, pos):
        span = parse_span(m.group(1))
        if span is None or span[0] > span[1] or not m.group(2).strip() or not m.group(3).strip():
            return 0.0
        pos, blocks = m.end(), blocks + 1
    m = _ANSWER.fullmatch(response, pos)
    return 1.0 if blocks >= 1 and m is not None and m.group(1).strip() else 0.0
