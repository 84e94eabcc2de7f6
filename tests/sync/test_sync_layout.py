"""Bucket plan and checksum of engine.sync.layout, against byte-level references (in-process)."""
import numpy as np
import pytest
import torch

from engine.sync import BucketLayout, TensorSpec, WeightSyncError, checksum
from engine.sync.weights import _load_bucket

SPECS = (  # odd sizes, mixed element sizes, an empty tensor, a lone byte
    TensorSpec("a", (7,), torch.float32),
    TensorSpec("b", (3, 5), torch.bfloat16),
    TensorSpec("empty", (0, 4), torch.float32),
    TensorSpec("c", (1,), torch.bool),
    TensorSpec("d", (33, 17), torch.int64),
    TensorSpec("e", (9,), torch.float16),
)


def _tensors(specs):
    g = torch.Generator().manual_seed(0)
    out = {}
    for s in specs:
        if s.dtype == torch.bool:
            out[s.name] = torch.randint(0, 2, s.shape, generator=g).bool()
        elif s.dtype.is_floating_point:
            out[s.name] = torch.randn(s.shape, generator=g).to(s.dtype)
        else:
            out[s.name] = torch.randint(-2**62, 2**62, s.shape, generator=g, dtype=s.dtype)
    return out


def _reference_stream(specs, tensors):
    """The stream built naively: each tensor's bytes, zero-padded to 8, concatenated."""
    out = b""
    for s in specs:
        raw = tensors[s.name].contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        out += raw + bytes(-len(raw) % 8)
    return out


class _WholeLoader:
    """Records what a whole-tensor loader (like vLLM's load_weights) is handed."""

    def __init__(self):
        self.got = {}

    def __call__(self, named, version):
        for name, t in named:
            assert name not in self.got, f"{name} loaded twice"
            self.got[name] = t.clone()


class _SliceLoader(_WholeLoader):
    """Also takes split tensors piece by piece, into preallocated tensors."""

    def load_slice(self, name, shape, start, end, values, version):
        dest = self.got.setdefault(name, torch.full(shape, 7, dtype=values.dtype))
        dest.view(-1)[start:end].copy_(values)


@pytest.mark.parametrize("loader", [_WholeLoader, _SliceLoader])
@pytest.mark.parametrize("bucket_bytes", [8, 24, 40, 1000, 1 << 30])
def test_sync_plan_packs_the_reference_stream_and_unpacks_it(bucket_bytes, loader):
    layout = BucketLayout(SPECS, bucket_bytes)
    tensors = _tensors(SPECS)
    ref = _reference_stream(SPECS, tensors)
    assert layout.total_bytes == len(ref)
    assert layout.num_buckets == -(-len(ref) // bucket_bytes)
    got, load = b"", loader()
    stage = torch.empty(layout.largest_split_bytes, dtype=torch.uint8)
    for b, pieces in enumerate(layout.buckets):
        payload = torch.zeros(layout.bucket_size(b), dtype=torch.uint8)
        for p in pieces:
            s = SPECS[p.index]
            n = (p.elem_end - p.elem_start) * s.dtype.itemsize
            payload[p.byte_start:p.byte_start + n].view(s.dtype).copy_(
                tensors[s.name].reshape(-1)[p.elem_start:p.elem_end])
        got += payload.numpy().tobytes()
        _load_bucket(layout, b, payload, stage, load, version=3)
    assert got == ref
    for s in SPECS:
        if s.numel:
            assert torch.equal(load.got[s.name], tensors[s.name]), s.name
    assert "empty" not in load.got  # no bytes, no piece: the receiver hands it over at the end
    split = [s.nbytes for s in SPECS if s.nbytes > bucket_bytes]
    assert layout.largest_split_bytes >= max(split, default=0)


def test_sync_layout_json_round_trip_and_bad_input():
    layout = BucketLayout(SPECS, 64)
    assert BucketLayout.from_json(layout.to_json()) == layout
    with pytest.raises(WeightSyncError, match="multiple of 8"):
        BucketLayout(SPECS, 12)
    with pytest.raises(WeightSyncError, match="appears twice"):
        BucketLayout((SPECS[0], SPECS[0]), 64)
    with pytest.raises(WeightSyncError, match="complex128"):
        BucketLayout((TensorSpec("z", (2,), torch.complex128),), 64)
    with pytest.raises(WeightSyncError, match="unknown dtype"):
        BucketLayout.from_json(b'{"bucket_bytes": 8, "specs": [["x", [1], "torch.nonsense"]]}')
    with pytest.raises(WeightSyncError, match="malformed"):
        BucketLayout.from_json(b'{"specs": []}')


def _reference_checksum(payload: bytes, block: int = 1024):
    words = [int(w) for w in np.frombuffer(payload, dtype="<u8")]
    blocks = [sum(words[i:i + block]) for i in range(0, len(words), block)]
    mod = 1 << 64
    s0 = sum(blocks) % mod
    s1 = sum((i + 1) * v for i, v in enumerate(blocks)) % mod
    signed = lambda v: v - mod if v >= 1 << 63 else v  # noqa: E731
    return [signed(s0), signed(s1)]


@pytest.mark.parametrize("nbytes", [8, 8 * 1024, 8 * 2500 + 16])
def test_sync_checksum_is_exact_and_catches_flips_and_swaps(nbytes):
    g = torch.Generator().manual_seed(nbytes)
    payload = torch.randint(0, 256, (nbytes,), generator=g, dtype=torch.uint8)
    payload[:8] = 255  # large words: the sums must wrap, not saturate or go through floats
    got = checksum(payload)
    assert got.dtype == torch.int64 and got.tolist() == _reference_checksum(payload.numpy().tobytes())
    flipped = payload.clone()
    flipped[nbytes // 2] ^= 1
    assert not torch.equal(checksum(flipped), got)
    if nbytes >= 8 * 2048:  # swap two whole blocks: word 0 is blind to it, word 1 is not
        swapped = payload.clone()
        swapped[:8192], swapped[8192:16384] = payload[8192:16384], payload[:8192]
        c = checksum(swapped)
        assert c[0] == got[0] and c[1] != got[1]
