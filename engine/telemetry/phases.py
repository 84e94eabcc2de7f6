"""Named phases of a step (the trainer times "update" and "sync"; the rollout reports its own generate / tool /
decode times): wall time per phase plus NVTX ranges."""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch


class PhaseTimer:
    """`with timer.phase("update"): ...` adds the elapsed seconds to timer.seconds["update"].

    On CUDA the same block is an NVTX range, so an Nsight Systems timeline reads by phase.
    """

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str):
        nvtx = torch.cuda.is_available()
        if nvtx:
            torch.cuda.nvtx.range_push(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0
            if nvtx:
                torch.cuda.nvtx.range_pop()

    def pop(self) -> dict[str, float]:
        """The per-phase times since the last pop, as `time_<phase>_s` metrics."""
        out = {f"time_{k}_s": v for k, v in self.seconds.items()}
        self.seconds.clear()
        return out
