"""Weight sync from learner rank 0 to rollout workers: a dedicated group, flat buckets, versions.

    # every member (learner rank 0 = sync rank 0, rollout workers = 1..N), same host/port:
    group = init_sync_group(host, port, rank, world_size, backend="gloo")   # or "nccl"
    # learner, on every learner rank (only rank 0 passes a group; others help FSDP gathers):
    sender = WeightSender(group if learner_rank == 0 else None, dtype=torch.bfloat16)
    sender.send_module(model, version=step)
    # rollout worker:
    receiver = WeightReceiver(group)
    version = receiver.receive(backend.load_weights)   # or module_loader(model)
"""
from engine.sync.errors import WeightSyncError
from engine.sync.group import SyncGroup, init_sync_group, free_port, free_ports
from engine.sync.layout import BucketLayout, TensorSpec, checksum
from engine.sync.weights import WeightSender, WeightReceiver, full_state_iter, state_specs
from engine.sync.loaders import module_loader, ModuleLoader

__all__ = [
    "BucketLayout", "ModuleLoader", "SyncGroup", "TensorSpec", "WeightReceiver",
    "WeightSender", "WeightSyncError", "checksum", "free_port", "free_ports", "full_state_iter",
    "init_sync_group", "module_loader", "state_specs",
]
