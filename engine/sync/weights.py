"""Broadcast learner weights to rollout workers in flat buckets, with a version and checksums.

One sync on the wire (all broadcasts from sync rank 0, learner rank 0):

1. a header, int64 [MAGIC, version, layout_len, with_checksum, num_buckets, total_bytes];
2. when the tensor names/shapes/wire dtypes or the bucket size changed since the last sync
   (always on the first), the layout as `layout_len` bytes of JSON (see layout.py);
3. every bucket as one flat uint8 buffer: 16 bytes of checksum (int64 [2], zeros when
   checksums are off) followed by the bucket's payload.

Both sides keep `depth` (default 2) bucket buffers, so filling (sender) or unpacking (receiver)
one bucket overlaps the transfer of the next; neither side ever holds more than those buckets
plus the one full tensor being gathered (sender) or, for a loader without `load_slice`, being
reassembled across buckets (receiver).

Usage, learner side (every learner rank runs this; only rank 0 holds a group):

    sender = WeightSender(group if rank == 0 else None, dtype=torch.bfloat16)
    sender.send_module(model, version=step)      # FSDP2 gathers happen on all ranks

Rollout side: `WeightReceiver(group).receive(backend.load_weights)` returns the version.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from engine.sync.errors import WeightSyncError
from engine.sync.group import SyncGroup
from engine.sync.layout import BucketLayout, TensorSpec, checksum, round_bucket_bytes, wire_dtype

MAGIC = 0x76746869_6E6B5753  # "vthinkWS": a receiver out of step with the sender notices at once
HEADER_WORDS = 6
TRAILER = 16  # checksum bytes in front of each bucket's payload
# Per backend. gloo: on CPU, 4-16 MB buckets measured best (bench/sync.py): the pipeline fills
# and drains quickly and each broadcast still moves enough to amortise its ~0.1 ms cost.
# nccl: every broadcast is a kernel launch plus a rendezvous, so fewer, larger buckets.
DEFAULT_BUCKET_BYTES = {"gloo": 16 << 20, "nccl": 256 << 20}
DEFAULT_DEPTH = 2

NamedTensors = Iterable[tuple[str, torch.Tensor]]
LoadFn = Callable[[list[tuple[str, torch.Tensor]], int], None]


def state_specs(module: nn.Module) -> list[TensorSpec]:
    """Names, full shapes and dtypes of a module's parameters, without gathering anything."""
    return [TensorSpec(n, tuple(p.shape), p.dtype) for n, p in module.named_parameters()]


def full_state_iter(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, full tensor) for every parameter of a plain or FSDP2-sharded module.

    Sharded (DTensor) parameters are all-gathered one at a time, which bounds memory to one
    full parameter; the all-gather is a collective of the learners' own group, so EVERY
    learner rank must iterate this to the end in the same order (rank 0 sends the tensors,
    the others discard them; `WeightSender.send_module` does exactly that). Plain parameters
    are yielded as detached views, not copies. Buffers are not yielded: they are not trained.
    """
    for name, p in module.named_parameters():
        t = p.detach()
        if isinstance(t, DTensor):
            t = t.full_tensor()
        yield name, t


def _layout_of(specs: Sequence[TensorSpec], cast_to: torch.dtype | None,
               bucket_bytes: int) -> BucketLayout:
    return BucketLayout(tuple(TensorSpec(s.name, tuple(s.shape), wire_dtype(s.dtype, cast_to))
                        for s in specs), bucket_bytes)


class WeightSender:
    """Learner side of weight sync. `group` is None on learner ranks that only help gather.

    `bucket_bytes`: wire bucket size (rounded up to a multiple of 8; None: the backend's
    default, 16 MB for gloo, 256 MB for nccl); `dtype`: wire dtype for
    floating tensors (e.g. torch.bfloat16 when the rollout runs bf16), None keeps each tensor's
    own. `depth`: bucket buffers (2: filling one overlaps sending the other; 1: no overlap).
    `on_wire(bucket_index, buffer)` is a test hook called on the checksummed buffer just
    before it is broadcast (e.g. to corrupt it); leave it None.
    """

    def __init__(self, group: SyncGroup | None, bucket_bytes: int | None = None,
                 dtype: torch.dtype | None = None, depth: int = DEFAULT_DEPTH,
                 on_wire: Callable[[int, torch.Tensor], None] | None = None):
        if group is not None and group.rank != 0:
            raise WeightSyncError(f"the weight sender must be sync rank 0, got rank {group.rank}")
        if dtype is not None and not dtype.is_floating_point:
            raise WeightSyncError(f"wire dtype must be a floating dtype, got {dtype}")
        if depth < 1:
            raise WeightSyncError(f"depth must be at least 1, got {depth}")
        self.group = group
        if bucket_bytes is None:
            bucket_bytes = DEFAULT_BUCKET_BYTES[group.backend if group is not None else "gloo"]
        self.bucket_bytes = round_bucket_bytes(bucket_bytes)
        self.dtype = dtype
        self.depth = depth
        self.on_wire = on_wire
        self.version = -1  # last version sent; versions must increase
        self._layout: BucketLayout | None = None
        self._buffers: list[torch.Tensor] = []

    def send_module(self, module: nn.Module, version: int | None = None,
                    checksum: bool = True) -> int:
        """Sync a (possibly FSDP2-sharded) module's parameters; call on every learner rank."""
        return self.send(full_state_iter(module), version, specs=state_specs(module),
                         checksum=checksum)

    def send(self, named_tensors: NamedTensors, version: int | None = None, *,
             specs: Sequence[TensorSpec] | None = None, checksum: bool = True) -> int:
        """Broadcast `named_tensors` as weights `version` (default: last + 1); returns it.

        Tensors are consumed one at a time, in order. Pass `specs` (names, shapes, source
        dtypes in the same order, e.g. `state_specs(module)`) when the iterable is a
        generator that gathers on the fly; without it the iterable is listed first to learn
        its layout (free for plain parameters, which are views). The iterable is always run to
        its end, so gathers on other learner ranks are never left waiting.
        """
        version = self.version + 1 if version is None else int(version)
        if version <= self.version:
            raise WeightSyncError(f"weight version must increase: got {version} after "
                                  f"{self.version}")
        if specs is None:
            named_tensors = list(named_tensors)
            specs = [TensorSpec(n, tuple(t.shape), t.dtype) for n, t in named_tensors]
        layout = _layout_of(specs, self.dtype, self.bucket_bytes)
        if self.group is None:  # a helper learner rank: take part in the gathers only
            for _ in named_tensors:
                pass
        else:
            tensors = iter(named_tensors)
            try:
                self._send(tensors, layout, version, checksum)
            except BaseException:
                for _ in tensors:  # a failed broadcast (a receiver died) must not strand the others' gathers
                    pass
                raise
        self.version = version
        return version

    def _send(self, tensors: Iterator[tuple[str, torch.Tensor]], layout: BucketLayout, version: int,
              with_checksum: bool) -> None:
        group = self.group
        layout_msg = layout.to_json() if layout != self._layout else b""
        header = torch.tensor([MAGIC, version, len(layout_msg), int(with_checksum),
                               layout.num_buckets, layout.total_bytes], dtype=torch.int64,
                              device=group.device)
        group.broadcast(header).wait()
        if layout_msg:
            msg = torch.frombuffer(bytearray(layout_msg), dtype=torch.uint8).to(group.device)
            group.broadcast(msg).wait()
            self._layout = layout
        self._buffers = _buffers(self._buffers, layout, self.depth, group.device)

        works: list = [None] * self.depth
        current, flat = -1, None
        specs = layout.specs
        for b, pieces in enumerate(layout.buckets):
            slot = b % self.depth
            if works[slot] is not None:
                works[slot].wait()  # the buffer is free again once its broadcast finished
            n = layout.bucket_size(b)
            buf = self._buffers[slot][:TRAILER + n]
            payload = buf[TRAILER:]
            for p in pieces:
                while current < p.index:
                    current += 1
                    flat = _next_tensor(tensors, specs[current])
                s = specs[p.index]
                start = p.byte_start
                end = start + (p.elem_end - p.elem_start) * s.dtype.itemsize
                payload[start:end].view(s.dtype).copy_(flat[p.elem_start:p.elem_end])
            if with_checksum:
                buf[:TRAILER].view(torch.int64).copy_(checksum(payload))
            else:
                buf[:TRAILER].zero_()
            if self.on_wire is not None:
                self.on_wire(b, buf)
            works[slot] = group.broadcast(buf)
        while current < len(specs) - 1:  # tensors with no bytes still have to be consumed
            current += 1
            _next_tensor(tensors, specs[current])
        extra = next(tensors, None)
        group.finish(works)
        if extra is not None:
            for _ in tensors:  # finish the gathers of the other learner ranks first
                pass
            raise WeightSyncError(f"got tensor {extra[0]!r} beyond the {len(specs)} the "
                                  f"layout lists")


def _buffers(have: list[torch.Tensor], layout: BucketLayout, depth: int,
             device: torch.device) -> list[torch.Tensor]:
    """`depth` bucket buffers for `layout` (reusing `have` when they fit): sized for the largest
    bucket actually used, so a huge bucket_bytes costs nothing for a small model."""
    size = TRAILER + min(layout.bucket_bytes, layout.total_bytes)
    count = min(depth, layout.num_buckets)
    if len(have) >= count and all(b.numel() == size for b in have):
        return have
    return [torch.empty(size, dtype=torch.uint8, device=device) for _ in range(count)]


def _next_tensor(tensors: Iterator[tuple[str, torch.Tensor]], spec: TensorSpec) -> torch.Tensor:
    item = next(tensors, None)
    if item is None:
        raise WeightSyncError(f"ran out of tensors: expected {spec.name!r} next")
    name, t = item
    if name != spec.name or tuple(t.shape) != spec.shape:
        raise WeightSyncError(f"expected tensor {spec.name!r} of shape {spec.shape} next, got "
                              f"{name!r} of shape {tuple(t.shape)}")
    return t.detach().reshape(-1)


class WeightReceiver:
    """Rollout side of weight sync: `receive(load)` takes in one sync and returns its version.

    `load(named_tensors, version)` is called per bucket with the tensors that completed in it
    (wire dtype, on the group's device); they are views of reused buffers, valid only during
    the call, so `load` must copy them (`param.copy_(t)` does). The signature matches
    `Backend.load_weights` of engine/rollout/backend.py. A loader that can write part of a
    tensor may also offer `load.load_slice(name, shape, start, end, flat_values, version)`
    (elements [start, end) of the flattened tensor): tensors split across buckets then go
    straight to it instead of being rebuilt in a staging buffer first (`module_loader` does).
    """

    def __init__(self, group: SyncGroup, depth: int = DEFAULT_DEPTH):
        if group.rank == 0:
            raise WeightSyncError("sync rank 0 is the sender; receivers are ranks 1..N")
        if depth < 1:
            raise WeightSyncError(f"depth must be at least 1, got {depth}")
        self.group = group
        self.depth = depth  # bucket buffers: while one is unpacked, depth-1 are being received
        self.version: int | None = None  # last version fully received
        self._layout: BucketLayout | None = None
        self._buffers: list[torch.Tensor] = []
        self._stage: torch.Tensor | None = None  # rebuilds split tensors for whole-tensor loaders

    def receive(self, load: LoadFn) -> int:
        """Receive one sync, verify it and hand it to `load`; returns the version.

        A checksum mismatch or an exception from `load` stops loading, but the rest of the
        stream is still received so the group stays in step; then WeightSyncError (naming the
        bad bucket and its tensors) or the exception from `load` is raised. Buckets before the
        failure were loaded already: the weights are then a mix of versions until the next
        successful sync, and `self.version` is left unchanged.
        """
        group = self.group
        header = torch.zeros(HEADER_WORDS, dtype=torch.int64, device=group.device)
        group.broadcast(header).wait()
        magic, version, layout_len, with_checksum, num_buckets, total = header.tolist()
        if magic != MAGIC:
            raise WeightSyncError(f"sync rank {group.rank}: bad sync header {header.tolist()}; "
                                  f"sender and receiver are out of step")
        if layout_len:
            msg = torch.empty(layout_len, dtype=torch.uint8, device=group.device)
            group.broadcast(msg).wait()
            self._layout = BucketLayout.from_json(bytes(msg.cpu().numpy()))
        layout = self._layout
        if layout is None:
            raise WeightSyncError(f"sync rank {group.rank}: the sender sent no layout and none "
                                  f"is known (did this receiver miss the first sync?)")
        if (num_buckets, total) != (layout.num_buckets, layout.total_bytes):
            raise WeightSyncError(f"header says {num_buckets} buckets / {total} bytes, layout "
                                  f"says {layout.num_buckets} / {layout.total_bytes}")
        depth = self.depth
        self._buffers = _buffers(self._buffers, layout, depth, group.device)

        if not hasattr(load, "load_slice") and layout.largest_split_bytes > (
                0 if self._stage is None else self._stage.numel()):
            self._stage = torch.empty(layout.largest_split_bytes, dtype=torch.uint8,
                                      device=group.device)
        failure: BaseException | None = None
        works: list = [None] * depth

        def post(b: int) -> None:
            if b < num_buckets:
                works[b % depth] = group.broadcast(
                    self._buffers[b % depth][:TRAILER + layout.bucket_size(b)])

        for b in range(depth - 1):
            post(b)
        for b in range(num_buckets):
            post(b + depth - 1)  # its buffer held bucket b-1, which is fully unpacked by now
            works[b % depth].wait()
            if failure is not None:
                continue  # drain the stream, load nothing more
            buf = self._buffers[b % depth][:TRAILER + layout.bucket_size(b)]
            payload = buf[TRAILER:]
            if with_checksum:
                got = checksum(payload)
                want = buf[:TRAILER].view(torch.int64)
                if not torch.equal(got, want):
                    names = layout.tensor_names(b)
                    failure = WeightSyncError(
                        f"weight sync version {version}: bucket {b} of {num_buckets} failed its "
                        f"checksum (got {got.tolist()}, sent {want.tolist()}); it carries "
                        f"{', '.join(names[:8])}{' ...' if len(names) > 8 else ''}. Buckets "
                        f"0..{b - 1} were loaded, the rest were not: sync again")
                    continue
            try:
                _load_bucket(layout, b, payload, self._stage, load, version)
            except Exception as e:  # noqa: BLE001 -- re-raised after the stream is drained
                failure = e
        if failure is None:
            empty = [(s.name, torch.empty(s.shape, dtype=s.dtype, device=group.device))
                     for s in layout.specs if s.numel == 0]
            if empty:
                load(empty, version)
        if group.device.type == "cuda":
            self._stage = None  # give device memory back (on CPU, keeping it saves page faults)
        if failure is not None:
            raise failure
        self.version = version
        return version


def _load_bucket(layout: BucketLayout, b: int, payload: torch.Tensor, stage: torch.Tensor | None,
                 load: LoadFn, version: int) -> None:
    """Hand the tensors of bucket `b` to `load`.

    Whole tensors go as views of `payload`, in one call. A piece of a tensor split across
    buckets goes straight to `load.load_slice` when the loader has one (no extra copy);
    otherwise the tensor is rebuilt in `stage` and loaded the moment it is complete, so one
    stage buffer, the size of the largest split tensor, serves them all in turn.
    """
    load_slice = getattr(load, "load_slice", None)
    whole = []
    for p in layout.buckets[b]:
        s = layout.specs[p.index]
        start = p.byte_start
        src = payload[start:start + (p.elem_end - p.elem_start) * s.dtype.itemsize].view(s.dtype)
        if p.elem_start == 0 and p.elem_end == s.numel:
            whole.append((s.name, src.view(s.shape)))
        elif load_slice is not None:
            load_slice(s.name, s.shape, p.elem_start, p.elem_end, src, version)
        else:
            staged = stage[:s.nbytes].view(s.dtype)
            staged[p.elem_start:p.elem_end].copy_(src)
            if p.elem_end == s.numel:
                load([(s.name, staged.view(s.shape))], version)
    if whole:
        load(whole, version)
