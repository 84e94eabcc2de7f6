"""Wire layout of a weight sync: tensors packed into one byte stream cut into flat buckets.

Every tensor (already cast to its wire dtype) starts at an 8-byte aligned offset of the stream;
the stream is cut into buckets of exactly `bucket_bytes` (a multiple of 8, the last bucket
shorter). Because element sizes divide 8, a bucket boundary always falls between elements, so a
tensor larger than a bucket, or straddling two, is simply split by element range. Both sides
derive the same per-bucket plan of `Piece`s from the layout, which is sent once as JSON.
The exact checksum of a bucket is also defined here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import torch

from engine.sync.errors import WeightSyncError

ALIGN = 8  # bytes; every tensor starts on it and bucket sizes are multiples of it
CHECKSUM_BLOCK = 1024  # int64 words summed per block before the position-weighted sum


@dataclass(frozen=True)
class TensorSpec:
    """One tensor as it travels: its name, shape and wire dtype."""
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


@dataclass(frozen=True)
class Piece:
    """Elements [elem_start, elem_end) of tensor `index`, at `byte_start` of a bucket's payload."""
    index: int
    elem_start: int
    elem_end: int
    byte_start: int


def wire_dtype(dtype: torch.dtype, cast_to: torch.dtype | None) -> torch.dtype:
    """Floating tensors travel as `cast_to` when one is given; everything else as it is."""
    return cast_to if cast_to is not None and dtype.is_floating_point else dtype


def _dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise WeightSyncError(f"layout names an unknown dtype {name!r}")
    return dtype


@dataclass(frozen=True)
class BucketLayout:
    """The stream layout both sides agree on: specs in send order and the bucket size."""
    specs: tuple[TensorSpec, ...]
    bucket_bytes: int

    def __post_init__(self):
        if self.bucket_bytes <= 0 or self.bucket_bytes % ALIGN:
            raise WeightSyncError(f"bucket_bytes must be a positive multiple of {ALIGN}, "
                                  f"got {self.bucket_bytes}")
        names = set()
        for s in self.specs:
            if s.dtype.itemsize > ALIGN or ALIGN % s.dtype.itemsize:
                raise WeightSyncError(f"tensor {s.name!r}: dtype {s.dtype} cannot be bucketed "
                                      f"(element size must divide {ALIGN})")
            if s.name in names:
                raise WeightSyncError(f"tensor {s.name!r} appears twice")
            names.add(s.name)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Byte offset of every tensor in the stream (8-byte aligned)."""
        out, pos = [], 0
        for s in self.specs:
            out.append(pos)
            pos += -(-s.nbytes // ALIGN) * ALIGN
        return tuple(out)

    @cached_property
    def total_bytes(self) -> int:
        if not self.specs:
            return 0
        return self.offsets[-1] + -(-self.specs[-1].nbytes // ALIGN) * ALIGN

    @property
    def num_buckets(self) -> int:
        return -(-self.total_bytes // self.bucket_bytes)

    def bucket_size(self, b: int) -> int:
        """Payload bytes of bucket `b` (all full but the last)."""
        return min(self.bucket_bytes, self.total_bytes - b * self.bucket_bytes)

    @cached_property
    def buckets(self) -> tuple[tuple[Piece, ...], ...]:
        """Per bucket, the pieces of tensors it carries, in stream order."""
        plan: list[list[Piece]] = [[] for _ in range(self.num_buckets)]
        for i, (s, off) in enumerate(zip(self.specs, self.offsets)):
            size = s.dtype.itemsize
            start, end = off, off + s.nbytes
            while start < end:
                b = start // self.bucket_bytes
                stop = min(end, (b + 1) * self.bucket_bytes)
                plan[b].append(Piece(i, (start - off) // size, (stop - off) // size,
                                     start - b * self.bucket_bytes))
                start = stop
        return tuple(tuple(p) for p in plan)

    @cached_property
    def largest_split_bytes(self) -> int:
        """Bytes of the largest tensor that spans more than one bucket (0 if none does)."""
        return max((self.specs[p.index].nbytes for pieces in self.buckets for p in pieces
                    if p.elem_end - p.elem_start != self.specs[p.index].numel), default=0)

    def tensor_names(self, b: int) -> list[str]:
        return [self.specs[p.index].name for p in self.buckets[b]]

    def to_json(self) -> bytes:
        return json.dumps({
            "bucket_bytes": self.bucket_bytes,
            "specs": [[s.name, list(s.shape), str(s.dtype)] for s in self.specs],
        }).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BucketLayout:
        try:
            obj = json.loads(data.decode())
            specs = tuple(TensorSpec(str(n), tuple(int(d) for d in shape), _dtype_from_name(dt))
                          for n, shape, dt in obj["specs"])
            return cls(specs, int(obj["bucket_bytes"]))
        except (ValueError, KeyError, TypeError) as e:
            raise WeightSyncError(f"received a malformed layout message: {e}") from e


def round_bucket_bytes(n: int) -> int:
    """`n` rounded up to the alignment; bucket sizes must be multiples of it."""
    if n <= 0:
        raise WeightSyncError(f"bucket_bytes must be positive, got {n}")
    return -(-n // ALIGN) * ALIGN


def checksum(payload: torch.Tensor) -> torch.Tensor:
    """Exact checksum of a uint8 payload (length a multiple of 8): int64 [2] on its device.

    Word 0 is the sum of the payload's int64 words, word 1 the sum of per-block sums weighted
    by block position (1, 2, ...), both modulo 2**64 (integer overflow wraps). Integer addition
    is associative, so the value does not depend on reduction order or device; any single
    corrupted word changes word 0, and swapped blocks change word 1. Not cryptographic.
    """
    words = payload.view(torch.int64)
    full = words.numel() // CHECKSUM_BLOCK * CHECKSUM_BLOCK
    blocks = words[:full].view(-1, CHECKSUM_BLOCK).sum(1)
    if full < words.numel():
        blocks = torch.cat([blocks, words[full:].sum().view(1)])
    weights = torch.arange(1, blocks.numel() + 1, dtype=torch.int64, device=payload.device)
    return torch.stack([blocks.sum(), (blocks * weights).sum()])
