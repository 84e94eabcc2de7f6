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
from importlib import import_module

# Resolved on first use (PEP 562): importing engine.sync stays cheap for config-only users.
_EXPORTS = {
    "WeightSyncError": "errors",
    "SyncGroup": "group",
    "init_sync_group": "group",
    "free_port": "group",
    "free_ports": "group",
    "Layout": "layout",
    "TensorSpec": "layout",
    "checksum": "layout",
    "WeightSender": "weights",
    "WeightReceiver": "weights",
    "full_state_iter": "weights",
    "state_specs": "weights",
    "module_loader": "loaders",
    "ModuleLoader": "loaders",
    "VllmSyncExtension": "loaders",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine.sync' has no attribute {name!r}")
    return getattr(import_module(f"engine.sync.{_EXPORTS[name]}"), name)
