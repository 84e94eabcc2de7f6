"""Decode planning: which contiguous frame runs a seeking decoder must decode to get some frames."""
from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """Decode frames [start, stop] inclusive; `start` is a keyframe. `wanted` are kept."""

    start: int
    stop: int
    wanted: tuple[int, ...]


def plan_runs(indices: list[int], keyframes: tuple[int, ...], num_frames: int | None = None) -> list[Run]:
    """Group sorted frame indices into runs that each start at a keyframe.

    A new run (a seek) starts whenever the next wanted frame has a keyframe after the last decoded
    frame: seeking there is never more work than decoding on through the gap. With `num_frames`,
    each run is extended to the end of its last GOP (whole GOPs, for a cache that keeps them all:
    any later request in those GOPs then needs no decoding).
    """
    targets = sorted(set(indices))
    runs: list[Run] = []
    start = stop = -1
    wanted: list[int] = []
    for t in targets:
        k = keyframes[max(bisect.bisect_right(keyframes, t) - 1, 0)]
        if wanted and k <= stop + 1:
            stop = t
            wanted.append(t)
            continue
        if wanted:
            runs.append(Run(start, stop, tuple(wanted)))
        start, stop, wanted = k, t, [t]
    if wanted:
        runs.append(Run(start, stop, tuple(wanted)))
    if num_frames is not None:
        runs = [Run(r.start, _gop_end(r.stop, keyframes, num_frames), r.wanted) for r in runs]
    return runs


def _gop_end(i: int, keyframes: tuple[int, ...], num_frames: int) -> int:
    nxt = bisect.bisect_right(keyframes, i)
    return keyframes[nxt] - 1 if nxt < len(keyframes) else num_frames - 1


def decode_work(indices: list[int], keyframes: tuple[int, ...]) -> int:
    """Frames a seeking decoder decodes to deliver `indices`."""
    return sum(r.stop - r.start + 1 for r in plan_runs(indices, keyframes))
