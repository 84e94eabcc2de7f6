"""CPU hot paths from csrc/ (engine._native) with pure-Python fallbacks that give identical results."""
from __future__ import annotations

try:
    from engine import _native
except ImportError:  # extension not built (e.g. a source checkout without `pip install`)
    _native = None

BACKEND = "native" if _native is not None else "python"


def pack_by_budget_py(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """First-fit decreasing; ties in length keep input order."""
    if max_tokens < 1:
        raise ValueError(f"pack_by_budget: max_tokens must be >= 1, got {max_tokens}")
    for i, n in enumerate(lengths):
        if n < 0:
            raise ValueError(f"pack_by_budget: lengths[{i}] is negative")
        if n > max_tokens:
            raise ValueError(f"pack_by_budget: lengths[{i}] = {n} exceeds max_tokens = {max_tokens}")
    bins: list[list[int]] = []
    load: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        for b in range(len(bins)):
            if load[b] + lengths[i] <= max_tokens:
                break
        else:
            bins.append([])
            load.append(0)
            b = len(bins) - 1
        bins[b].append(i)
        load[b] += lengths[i]
    return bins


def pack_by_budget(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Pack item indices into as few bins of at most `max_tokens` as first-fit decreasing finds."""
    if _native is not None:
        return _native.pack_by_budget(list(lengths), int(max_tokens))
    return pack_by_budget_py(list(lengths), max_tokens)
