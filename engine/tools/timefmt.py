"""Times as tools take and print them: seconds or 'MM:SS' strings in, 'MM:SS.s' out."""
from __future__ import annotations

import math
import re

from engine.errors import ToolCallError

# Strings are length-capped before matching, and none of these patterns has nested quantifiers.
_SECONDS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:s|sec|secs|seconds)?")
_MMSS = re.compile(r"(\d{1,4}):(\d{1,2}(?:\.\d*)?)")
_HHMMSS = re.compile(r"(\d{1,3}):(\d{1,2}):(\d{1,2}(?:\.\d*)?)")
MAX_TIME_CHARS = 32


def parse_time(value, what: str) -> float:
    """A time argument -> seconds. Accepts a finite number (negative allowed: callers decide whether
    to clamp) or a string '12.5', '12.5s', 'MM:SS', 'MM:SS.ss', 'H:MM:SS'. Raises ToolCallError naming
    `what` otherwise."""
    expected = "a time in seconds (e.g. 12.5) or an 'MM:SS' string"
    if isinstance(value, bool) or value is None:
        raise ToolCallError(f"{what} must be {expected}, got {short_repr(value)}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            raise ToolCallError(f"{what} must be {expected}, got an integer too large to be a time") from None
        if not math.isfinite(seconds):
            raise ToolCallError(f"{what} must be a finite time, got {short_repr(value)}")
        return seconds
    if not isinstance(value, str):
        raise ToolCallError(f"{what} must be {expected}, got {type(value).__name__} {short_repr(value)}")
    text = value.strip()
    if not text or len(text) > MAX_TIME_CHARS:
        raise ToolCallError(f"{what} must be {expected}, got {short_repr(value)}")
    if m := _SECONDS.fullmatch(text):
        return float(m[1])
    if m := _MMSS.fullmatch(text):
        minutes, seconds = int(m[1]), float(m[2])
    elif m := _HHMMSS.fullmatch(text):
        if int(m[2]) >= 60:
            raise ToolCallError(f"{what}: minutes must be < 60 in 'H:MM:SS', got {short_repr(value)}")
        minutes, seconds = int(m[1]) * 60 + int(m[2]), float(m[3])
    else:
        raise ToolCallError(f"{what} must be {expected}, got {short_repr(value)}")
    if seconds >= 60:
        raise ToolCallError(f"{what}: seconds must be < 60 in 'MM:SS', got {short_repr(value)}")
    return minutes * 60 + seconds


def format_time(seconds: float, digits: int = 1) -> str:
    """Seconds -> 'MM:SS.s' (`digits` decimals; minutes grow past 99 as needed). Negative -> 00:00."""
    if not math.isfinite(seconds):
        return str(seconds)
    # Round once, on the whole value, so 59.96 s prints as 01:00.0 and never as 00:60.0.
    scale = 10 ** digits
    units = max(0, round(seconds * scale))
    minutes, rest = divmod(units, 60 * scale)
    whole, frac = divmod(rest, scale)
    return f"{minutes:02d}:{whole:02d}" + (f".{frac:0{digits}d}" if digits > 0 else "")


def short_repr(value, limit: int = 60) -> str:
    """repr of a value for an error message, cut to `limit` characters."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} chars)"
    try:
        text = repr(value)
    except Exception:  # a hostile object: its type is enough
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."
