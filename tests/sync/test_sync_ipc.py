"""The colocated weight handoff (engine/sync/ipc.py) between two real processes: the receiver loads, from views
into the sender's one buffer, exactly the sender's weights. On CPU the handle is a shared-memory file; the GPU
check pack (bench/gpu_check.py) runs the same code with CUDA IPC handles on one GPU."""
import multiprocessing
import pickle

import pytest
import torch

from engine.sync import WeightSyncError, state_specs
from engine.sync.ipc import SharedPacker, load_shared


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3, bias=False))


def _receiver(conn):
    model = _model(1)  # other weights than the sender's
    state = model.state_dict()

    def load(named, version):
        for name, t in named:
            state[name].copy_(t)

    version = load_shared(pickle.loads(conn.recv()), load)
    conn.send(pickle.dumps((version, model.state_dict())))  # bytes: plain pickling copies the data back


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_a_second_process_loads_the_shared_weights(dtype):
    sender = _model(0)
    packer = SharedPacker(state_specs(sender), "cpu", dtype=dtype)
    for name, p in sender.named_parameters():
        packer.add(name, p)
    handle = pickle.dumps(packer.share(version=7))  # what Ray would carry
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_receiver, args=(child,))
    proc.start()
    parent.send(handle)
    version, got = pickle.loads(parent.recv())
    proc.join(60)
    packer.release()
    assert proc.exitcode == 0 and version == 7
    for name, p in sender.named_parameters():
        want = p.detach() if dtype is None else p.detach().to(dtype).float()
        assert torch.equal(got[name], want), name


def test_tensors_must_come_in_the_announced_order_and_shapes():
    model = _model(0)
    packer = SharedPacker(state_specs(model), "cpu")
    params = list(model.named_parameters())
    with pytest.raises(WeightSyncError, match="expected '0.weight'"):
        packer.add(params[1][0], params[1][1])
    with pytest.raises(WeightSyncError, match="shape"):
        packer.add(params[0][0], torch.zeros(2, 2))
    with pytest.raises(WeightSyncError, match="0 of 5"):
        packer.share(0)
