"""Optional tool-use shaping: reward calls that ran cleanly, never the mere number of calls."""
from __future__ import annotations


def tool_use_reward(ok_calls: int, failed_calls: int) -> float:
    """Fraction of tool calls that succeeded; 0.0 when the sample made none.

    Bounded in [0, 1] and independent of how many calls were made, so it cannot be farmed by
    calling more: one clean call earns as much as ten, and every failed call lowers it.
    """
    if ok_calls < 0 or failed_calls < 0:
        raise ValueError(f"call counts must be >= 0, got ok={ok_calls}, failed={failed_calls}")
    total = ok_calls + failed_calls
    return ok_calls / total if total else 0.0
