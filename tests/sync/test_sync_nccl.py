"""Weight sync over NCCL between two GPUs (skipped without two CUDA devices)."""
import pytest
import torch
import torch.multiprocessing as mp

from engine.sync import WeightReceiver, WeightSender, free_port, init_sync_group


def _tensors(device):
    g = torch.Generator().manual_seed(3)
    return {"w": torch.randn(513, 257, generator=g).to(device),
            "b": torch.randn(7, generator=g).to(device),
            "ids": torch.arange(11, device=device)}


def _nccl_worker(rank, port, out):
    group = init_sync_group("127.0.0.1", port, rank, 2, backend="nccl", timeout_s=60,
                            device=f"cuda:{rank}")
    if rank == 0:
        WeightSender(group, bucket_bytes=4096, dtype=torch.bfloat16).send(
            list(_tensors("cuda:0").items()), version=7)
    else:
        got = {}
        version = WeightReceiver(group).receive(
            lambda named, v: got.update({n: t.cpu().clone() for n, t in named}))
        torch.save((version, got), out)
    group.close()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs one GPU per rank")
def test_sync_nccl_two_gpus_bf16_bit_equal(tmp_path):
    out = str(tmp_path / "nccl.pt")
    mp.start_processes(_nccl_worker, args=(free_port(), out), nprocs=2, start_method="spawn")
    version, got = torch.load(out)
    assert version == 7
    for name, t in _tensors("cpu").items():
        want = t.to(torch.bfloat16) if t.is_floating_point() else t
        assert torch.equal(got[name].view(-1).view(torch.uint8), want.view(-1).view(torch.uint8))
