"""Numbers in answer text: what a numerical / regression row's answer holds (engine/data/sources.py) and what a
response's <answer> says (engine/reward) are read by the same rule."""
from __future__ import annotations

import math
import re

# One optional sign, digits with an optional fraction; commas as thousands separators are dropped first.
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?")


def number_text(text: str) -> str | None:
    """The first number in `text` as written ('1,234.5' -> '1234.5'), or None."""
    m = _NUMBER.search(text.replace(",", ""))
    return None if m is None else m.group(0)


def parse_number(text: str) -> float | None:
    """The first number in `text` ('1,234.5' -> 1234.5), or None when there is none or it is not finite."""
    found = number_text(text)
    if found is None:
        return None
    value = float(found)
    return value if math.isfinite(value) else None
