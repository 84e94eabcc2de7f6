"""Weight handoff between two processes on one device: a shared buffer instead of a collective.

NCCL refuses two ranks on one GPU, so a rollout worker colocated with learner rank 0 (`ray.colocate`) cannot be in
the sync group. Rank 0 instead packs the weights into one flat buffer on its device and hands the worker a handle to
it (torch.multiprocessing's reductions: a CUDA IPC handle on GPU, a shared-memory file on CPU), as verl and OpenRLHF
do. The worker opens the same memory, no copy, loads its weights from views into it, and the sender frees the
buffer once told it was loaded.

    packer = SharedPacker(state_specs(model), device, dtype=torch.bfloat16)   # learner rank 0
    for name, t in full_state_iter(model): packer.add(name, t)               # or teed from the broadcast's gather
    handle = packer.share(version)                       # picklable: goes to the worker (Ray, a pipe)
    load_shared(handle, backend.load_weights)            # worker: returns the version
    packer.release()                                     # learner, after the worker returned
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.sync.errors import WeightSyncError
from engine.sync.layout import TensorSpec, wire_dtype

ALIGN = 16  # byte alignment of each tensor in the buffer: every dtype's views stay aligned


@dataclass(frozen=True)
class SharedWeights:
    """What crosses the process boundary: the buffer's handle and where each tensor lies in it."""

    version: int
    rebuild: tuple  # (function, args) from torch.multiprocessing.reductions.reduce_tensor
    entries: tuple[tuple[str, tuple[int, ...], str, int], ...]  # (name, shape, dtype name, byte offset)
    nbytes: int


class SharedPacker:
    """One shareable buffer laid out for `specs` (names, shapes, source dtypes, in order; floating tensors travel
    as `dtype` when given), on `device`. `add` copies each tensor into its place as it comes, so the sender holds
    the buffer plus the one tensor being gathered."""

    def __init__(self, specs: Sequence[TensorSpec], device: torch.device | str, dtype: torch.dtype | None = None):
        self.entries: list[tuple[str, tuple[int, ...], str, int]] = []
        offset = 0
        for s in specs:
            dt = wire_dtype(s.dtype, dtype)
            offset = -(-offset // ALIGN) * ALIGN
            self.entries.append((s.name, tuple(s.shape), str(dt).removeprefix("torch."), offset))
            offset += math.prod(s.shape) * torch.empty((), dtype=dt).element_size()
        self.nbytes = offset
        self._buffer: torch.Tensor | None = torch.empty(offset, dtype=torch.uint8, device=device)
        if self._buffer.device.type == "cpu":
            # Shared from the start (moving it later copies it), as a named shared-memory file: the default strategy
            # passes a file descriptor, which only a process spawned by this one (not a Ray actor) can receive.
            torch.multiprocessing.set_sharing_strategy("file_system")
            self._buffer.share_memory_()
        self._views = dict(_views(self._buffer, self.entries))
        self._added = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Copy the next tensor (in `specs` order) into its place."""
        if self._added >= len(self.entries) or self.entries[self._added][0] != name:
            want = self.entries[self._added][0] if self._added < len(self.entries) else "nothing"
            raise WeightSyncError(f"shared weights: got {name!r}, expected {want!r}")
        view = self._views[name]
        if tuple(tensor.shape) != tuple(view.shape):
            raise WeightSyncError(f"shared weights: {name} has shape {tuple(tensor.shape)}, expected {tuple(view.shape)}")
        view.copy_(tensor.detach())
        self._added += 1

    def share(self, version: int) -> SharedWeights:
        """The buffer's handle, once every tensor of `specs` was added."""
        from torch.multiprocessing.reductions import reduce_tensor

        if self._buffer is None or self._added != len(self.entries):
            raise WeightSyncError(f"shared weights: {self._added} of {len(self.entries)} tensors were added")
        return SharedWeights(int(version), reduce_tensor(self._buffer), tuple(self.entries), self.nbytes)

    def release(self) -> None:
        """Drop the buffer: call once the receiver has loaded (and dropped its views of) it."""
        self._buffer = None
        self._views = {}


def _views(buffer: torch.Tensor, entries) -> list[tuple[str, torch.Tensor]]:
    out = []
    for name, shape, dtype, offset in entries:
        dt = getattr(torch, dtype)
        size = math.prod(shape) * torch.empty((), dtype=dt).element_size()
        out.append((name, buffer[offset:offset + size].view(dt).view(shape)))
    return out


def open_shared(shared: SharedWeights) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) views into the sender's buffer, in the order they were added."""
    fn, args = shared.rebuild
    buffer = fn(*args)
    if buffer.numel() != shared.nbytes:
        raise WeightSyncError(f"shared weights {shared.version}: the buffer holds {buffer.numel()} bytes, "
                              f"the handle says {shared.nbytes}")
    return _views(buffer, shared.entries)


def load_shared(shared: SharedWeights, load) -> int:
    """Load the shared weights with `load(named_tensors, version)` (a backend's load_weights, which copies); the
    views are dropped before returning, so the sender may free the buffer. Returns the version."""
    tensors = open_shared(shared)
    load(tensors, shared.version)
    tensors.clear()
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # the copies out of the sender's memory are done before it may free it
    return shared.version
