"""Weight sync between real processes over real gloo groups (torch.multiprocessing spawn)."""
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine.model import build_tiny_model
from engine.sync import (BucketLayout, TensorSpec, WeightReceiver, WeightSender, WeightSyncError,
                         free_port, free_ports, init_sync_group, module_loader)
from engine.sync.weights import TRAILER

TIMEOUT_S = 30.0  # a hang becomes an error instead of a stuck test run


# Children come from a fork server that imported torch and transformers once (seconds per
# process under plain spawn). Not plain fork: once pytest's process has run a parallel torch
# op, OpenMP's thread pool does not survive fork and a child's next parallel op hangs.
def _spawn(fn, nprocs, *args):
    mp.set_forkserver_preload(["torch", "torch.distributed.fsdp", "engine.model.tiny",
                               "engine.sync.weights", "engine.sync.loaders"])
    mp.start_processes(fn, args=args, nprocs=nprocs, join=True, start_method="forkserver")


def _bits(t: torch.Tensor) -> torch.Tensor:
    """Raw bytes, so equality is bitwise (NaN-safe, -0.0 != 0.0)."""
    return t.detach().contiguous().view(-1).view(torch.uint8)


def _assert_bit_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(_bits(a[k]), _bits(b[k])), k


def _state(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# --- a learner and two rollout workers, real tiny Qwen2.5-VL models --------------------------

def _tiny_model_worker(rank, port, out):
    model, _ = build_tiny_model(seed=rank)  # every process starts from different weights
    group = init_sync_group("127.0.0.1", port, rank, 3, timeout_s=TIMEOUT_S)
    torch.save(_state(model), f"{out}/before{rank}.pt")
    versions = []
    if rank == 0:
        sender = WeightSender(group, bucket_bytes=1 << 20)  # several buckets, tensors straddle
        versions.append(sender.send_module(model, version=1))
        with torch.no_grad():  # an "optimizer step" between syncs
            for p in model.parameters():
                p.mul_(0.5).add_(0.25)
        torch.save(_state(model), f"{out}/sent{rank}.pt")
        versions.append(sender.send_module(model))
        torch.save(_state(model), f"{out}/sent_final.pt")
    else:
        receiver = WeightReceiver(group)
        load = module_loader(model)
        versions.append(receiver.receive(load))
        torch.save(_state(model), f"{out}/after_v1_{rank}.pt")
        versions.append(receiver.receive(load))
        torch.save(_state(model), f"{out}/after_v2_{rank}.pt")
    torch.save(versions, f"{out}/versions{rank}.pt")
    group.close()


def test_sync_tiny_model_to_two_receivers_bit_equal_with_versions(tmp_path):
    _spawn(_tiny_model_worker, 3, free_port(), str(tmp_path))
    learner_v1 = torch.load(tmp_path / "before0.pt")
    learner_v2 = torch.load(tmp_path / "sent_final.pt")
    for rank in (1, 2):
        before = torch.load(tmp_path / f"before{rank}.pt")
        assert any(not torch.equal(before[k], learner_v1[k]) for k in before)  # the test can fail
        _assert_bit_equal(torch.load(tmp_path / f"after_v1_{rank}.pt"), learner_v1)
        _assert_bit_equal(torch.load(tmp_path / f"after_v2_{rank}.pt"), learner_v2)
        assert torch.load(tmp_path / f"versions{rank}.pt") == [1, 2]
    assert torch.load(tmp_path / "versions0.pt") == [1, 2]


# --- bucket sizes and wire dtype, one sender and one receiver over a mixed set of tensors ----

SHAPES = {"w": ((33, 17), torch.float32), "b": ((7,), torch.float32), "h": ((5, 3), torch.float16),
          "bf": ((11,), torch.bfloat16), "steps": ((3,), torch.int64), "mask": ((13,), torch.bool),
          "none": ((0, 3), torch.float32), "one": ((1,), torch.float32)}
# (bucket_bytes, wire dtype): a bucket smaller than most tensors, sizes that cut tensors at odd
# places, one bucket for everything, and bf16 on the wire.
SCENARIOS = [(8, None), (100, None), (1000, None), (1 << 30, None), (96, torch.bfloat16),
             (1 << 30, torch.bfloat16)]


def _mixed_tensors(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (shape, dtype) in SHAPES.items():
        if dtype == torch.bool:
            out[name] = torch.randint(0, 2, shape, generator=g).bool()
        elif dtype.is_floating_point:
            out[name] = (torch.randn(shape, generator=g) * 3).to(dtype)
        else:
            out[name] = torch.randint(-2**40, 2**40, shape, generator=g)
    return out


def _buckets_worker(rank, port, out):
    group = init_sync_group("127.0.0.1", port, rank, 2, timeout_s=TIMEOUT_S)
    receiver = None if rank == 0 else WeightReceiver(group)  # one receiver: layouts change
    for i, (bucket_bytes, dtype) in enumerate(SCENARIOS):
        if rank == 0:
            sender = WeightSender(group, bucket_bytes=bucket_bytes, dtype=dtype)
            sender.send(list(_mixed_tensors(i).items()), version=10 + i)
        else:
            got = {}

            def load(named, version):
                got.update({n: t.clone() for n, t in named})

            version = receiver.receive(load)
            torch.save((version, got), f"{out}/scenario{i}.pt")
    group.close()


def test_sync_bucket_sizes_and_bf16_wire_dtype(tmp_path):
    _spawn(_buckets_worker, 2, free_port(), str(tmp_path))
    for i, (bucket_bytes, dtype) in enumerate(SCENARIOS):
        version, got = torch.load(tmp_path / f"scenario{i}.pt")
        assert version == 10 + i
        sent = _mixed_tensors(i)
        # the wire dtype equals casting: floats become `dtype`, the rest travel unchanged
        want = {n: t.to(dtype) if dtype is not None and t.is_floating_point() else t
                for n, t in sent.items()}
        _assert_bit_equal(got, want)


# --- a corrupted bucket is caught, named, and the group stays usable ------------------------

def _corrupt_worker(rank, port, out):
    group = init_sync_group("127.0.0.1", port, rank, 2, timeout_s=TIMEOUT_S)
    tensors = list(_mixed_tensors(0).items())

    # Damage a byte of `steps` (in bucket 9 of 10, after w and b are complete) after the
    # checksum is taken, as damage in transit would.
    layout = BucketLayout(tuple(TensorSpec(n, tuple(t.shape), t.dtype) for n, t in tensors), 256)
    at = layout.offsets[[n for n, _ in tensors].index("steps")] + 2

    def flip_a_bit(bucket, buf):
        if bucket == at // 256:
            buf[TRAILER + at % 256] ^= 4

    if rank == 0:
        WeightSender(group, bucket_bytes=256, on_wire=flip_a_bit).send(tensors, version=1)
        WeightSender(group, bucket_bytes=256).send(tensors, version=2)
        # checksums off: the same damage goes through unnoticed (so the check is what catches it)
        WeightSender(group, bucket_bytes=256, on_wire=flip_a_bit).send(tensors, version=3,
                                                                       checksum=False)
        sender = WeightSender(group, bucket_bytes=256)
        sender.send(tensors, version=4)
        sender.send(tensors, version=5)
    else:
        receiver = WeightReceiver(group)
        got = {}

        def load(named, version):
            got.update({n: t.clone() for n, t in named})

        try:
            receiver.receive(load)
            error = None
        except WeightSyncError as e:
            error = str(e)
        after_error = (receiver.version, sorted(got))
        got.clear()
        clean = (receiver.receive(load), dict(got))
        got.clear()
        unchecked = (receiver.receive(load), dict(got))

        def refuse_steps(named, version):  # a loader that fails midway, e.g. an unknown name
            for name, _ in named:
                if name == "steps":
                    raise KeyError(name)

        try:
            receiver.receive(refuse_steps)
            load_error = None
        except KeyError as e:
            load_error = (str(e), receiver.version)
        after_load_error = receiver.receive(load)  # the stream was drained: still in step
        torch.save((error, after_error, clean, unchecked, load_error, after_load_error),
                   f"{out}/corrupt.pt")
    group.close()


def test_sync_corrupted_bucket_is_detected_and_named(tmp_path):
    _spawn(_corrupt_worker, 2, free_port(), str(tmp_path))
    (error, (version_after, loaded), (v2, clean), (v3, unchecked), load_error,
     after_load_error) = torch.load(tmp_path / "corrupt.pt")
    assert error is not None and "bucket 9 of 10" in error and "version 1" in error
    assert "steps" in error  # names what the bad bucket carried
    assert version_after is None  # the failed sync is not taken as a version
    assert loaded == ["b", "w"]  # the buckets before the bad one only
    assert v2 == 2
    _assert_bit_equal(clean, _mixed_tensors(0))
    assert v3 == 3 and not all(torch.equal(_bits(unchecked[n]), _bits(t))
                               for n, t in _mixed_tensors(0).items())
    assert load_error == ("'steps'", 3)  # the loader's own error, the version not advanced
    assert after_load_error == 5


# --- the sync group beside a learners' default group (2 learner ranks + 1 rollout worker) ---

def _coexist_worker(rank, sync_port, default_port, out):
    # process 0 = learner rank 0 (sync rank 0), 1 = learner rank 1 (no sync group),
    # 2 = rollout worker (sync rank 1, no default group)
    if rank < 2:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{default_port}", rank=rank,
                                world_size=2, timeout=timedelta(seconds=TIMEOUT_S))
    group = init_sync_group("127.0.0.1", sync_port, {0: 0, 2: 1}[rank], 2,
                            timeout_s=TIMEOUT_S) if rank != 1 else None
    tensors = list(_mixed_tensors(7).items())
    log = []
    for step in range(2):
        if rank < 2:
            x = torch.tensor([float(rank + 1 + step)])
            dist.all_reduce(x)  # the learners' own collective, between syncs
            log.append(x.item())
            WeightSender(group).send(tensors, version=step)
            log.append((dist.get_world_size(), dist.get_rank()))
        else:
            got = {}
            version = WeightReceiver(group).receive(
                lambda named, v: got.update({n: t.clone() for n, t in named}))
            log.append((version, got, dist.is_initialized()))
    torch.save(log, f"{out}/coexist{rank}.pt")
    if group is not None:
        group.close()
    if rank < 2:
        dist.destroy_process_group()


def test_sync_group_coexists_with_default_group(tmp_path):
    _spawn(_coexist_worker, 3, *free_ports(2), str(tmp_path))
    for rank in (0, 1):
        log = torch.load(tmp_path / f"coexist{rank}.pt")
        assert log == [3.0, (2, rank), 5.0, (2, rank)]
    log = torch.load(tmp_path / "coexist2.pt")
    assert [v for v, _, _ in log] == [0, 1]
    assert not any(init for _, _, init in log)  # the rollout worker never joined a default group
    for _, got, _ in log:
        _assert_bit_equal(got, _mixed_tensors(7))


# --- FSDP2-sharded learner over 2 gloo ranks -> a third process ---------------------------

def _fsdp_worker(rank, sync_port, default_port, out):
    from torch.distributed.fsdp import fully_shard

    model, _ = build_tiny_model(seed=0 if rank < 2 else 5)
    if rank < 2:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{default_port}", rank=rank,
                                world_size=2, timeout=timedelta(seconds=TIMEOUT_S))
        for layer in model.model.language_model.layers:
            fully_shard(layer)
        fully_shard(model)
        from torch.distributed.tensor import DTensor
        assert all(isinstance(p, DTensor) for p in model.parameters())  # really sharded
    group = init_sync_group("127.0.0.1", sync_port, {0: 0, 2: 1}[rank], 2,
                            timeout_s=TIMEOUT_S) if rank != 1 else None
    if rank < 2:
        WeightSender(group, bucket_bytes=300_000).send_module(model, version=4)
    else:
        version = WeightReceiver(group).receive(module_loader(model))
        torch.save((version, _state(model)), f"{out}/fsdp_received.pt")
    if group is not None:
        group.close()
    if rank < 2:
        dist.destroy_process_group()


def test_sync_fsdp2_sharded_learner_to_rollout_bit_equal(tmp_path):
    _spawn(_fsdp_worker, 3, *free_ports(2), str(tmp_path))
    version, received = torch.load(tmp_path / "fsdp_received.pt")
    assert version == 4
    reference, _ = build_tiny_model(seed=0)  # the unsharded learner model
    _assert_bit_equal(received, _state(reference))
