"""Named phases of a step, timed, and marked for the two profilers people use.

The trainer times "update" and "sync"; the rollout worker's backend times "vision_tower", "prefill" and
"sampling" and its loop "generate" and "tool"; the learner "learner_reference", "learner_forward_backward" and
"optimizer". Each phase is a torch.profiler.record_function range (`vthink/<phase>` rows in a torch profiler
trace) and, on CUDA, an NVTX range, so an Nsight Systems timeline reads by phase. `profiled` records one whole
rollout-worker and learner call with the torch profiler when $VTHINK_PROFILE_DIR is set
(`vthink bench e2e --profile`).
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch


class PhaseTimer:
    """`with timer.phase("update"): ...` adds the elapsed seconds to timer.seconds["update"].

    On CUDA the phase ends with a synchronize when the timer is made with `cuda_sync=True` (the learner's and the
    backend's phases), so a phase's time is its kernels' time, not their launch time.
    """

    def __init__(self, cuda_sync: bool = False):
        self.seconds: dict[str, float] = defaultdict(float)
        self.cuda_sync = cuda_sync

    @contextmanager
    def phase(self, name: str):
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        if cuda:
            torch.cuda.nvtx.range_push(name)
        t0 = time.perf_counter()
        try:
            with torch.profiler.record_function(f"vthink/{name}"):
                yield
                if cuda and self.cuda_sync:
                    torch.cuda.synchronize()
        finally:
            self.seconds[name] += time.perf_counter() - t0
            if cuda:
                torch.cuda.nvtx.range_pop()

    def pop(self) -> dict[str, float]:
        """The per-phase times since the last pop, as `time_<phase>_s` metrics."""
        out = {f"time_{k}_s": v for k, v in self.seconds.items()}
        self.seconds.clear()
        return out


PROFILE_ENV = "VTHINK_PROFILE_DIR"
_calls: dict[str, int] = defaultdict(int)


@contextmanager
def profiled(role: str, call: int = 2):
    """With $VTHINK_PROFILE_DIR set, the `call`-th call of `role` in this process (the first is warm-up) runs under
    torch.profiler: <dir>/<role>-<pid>.json is its Chrome/Perfetto trace (the phases are its `vthink/...` ranges)
    and <role>-<pid>.txt its operator table by self time. Without the variable this costs a dict lookup."""
    import os

    where = os.environ.get(PROFILE_ENV)
    _calls[role] += 1
    if not where or _calls[role] != call:
        yield
        return
    from pathlib import Path

    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, record_shapes=False) as prof:
        yield
    out = Path(where)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{role}-{os.getpid()}"
    prof.export_chrome_trace(str(stem.with_suffix(".json")))
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    stem.with_suffix(".txt").write_text(table + "\n")
