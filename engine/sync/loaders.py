"""In-place weight loaders for the rollout side: a transformers module, and vLLM workers.

Both give `WeightReceiver.receive` a `load(named_tensors, version)` that copies each bucket's
tensors into the running model's own storage: no new model, no engine restart.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from engine.sync.errors import WeightSyncError
from engine.sync.group import init_sync_group
from engine.sync.weights import WeightReceiver


class ModuleLoader:
    """Copies received tensors into a module's parameters by name, casting to their dtype.

    Names are those of `module.named_parameters()`, i.e. what `full_state_iter` sends for the
    same architecture (tied weights appear once and share storage, so one copy updates both).
    `load_slice` lets the receiver write tensors split across buckets piece by piece.
    """

    def __init__(self, module: nn.Module):
        self.params = dict(module.named_parameters())

    def _param(self, name: str, shape: tuple[int, ...], version: int) -> torch.Tensor:
        p = self.params.get(name)
        if p is None:
            raise WeightSyncError(f"weights version {version}: the rollout model has no "
                                  f"parameter {name!r}")
        if tuple(p.shape) != tuple(shape):
            raise WeightSyncError(f"weights version {version}: {name!r} has shape "
                                  f"{tuple(shape)}, the rollout model has {tuple(p.shape)}")
        return p

    def __call__(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> None:
        with torch.no_grad():
            for name, t in named_tensors:
                self._param(name, t.shape, version).copy_(t)

    def load_slice(self, name: str, shape: tuple[int, ...], start: int, end: int,
                   values: torch.Tensor, version: int) -> None:
        p = self._param(name, shape, version)
        if not p.is_contiguous():
            raise WeightSyncError(f"parameter {name!r} is not contiguous; cannot load a slice")
        with torch.no_grad():
            p.view(-1)[start:end].copy_(values)


def module_loader(module: nn.Module) -> ModuleLoader:
    """A `load` for `WeightReceiver.receive` that updates `module`'s parameters in place."""
    return ModuleLoader(module)


class VllmSyncExtension:
    """Mixin for vLLM workers, installed by
    `LLM(..., worker_extension_cls="engine.sync.loaders.VllmSyncExtension")`.

    Every vLLM worker process (each tensor-parallel rank) is one member of the sync group and
    receives the full weights; vLLM's own `model.load_weights` shards them and maps HF names
    (it accepts the Qwen2.5-VL checkpoint names, transformers-5 module names included). Driven
    from the rollout actor by `llm.collective_rpc("init_weight_sync", args=(...))` once, then
    `llm.collective_rpc("receive_weights")` per sync, followed by `llm.reset_prefix_cache()`
    because cached KV blocks were computed with the old weights.
    Untested here: it needs vLLM and a GPU.
    """

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int,
                         backend: str = "nccl", timeout_s: float = 300.0) -> None:
        # vLLM's worker sets self.rank (its TP rank) and self.device; both are stable attributes.
        self._weight_receiver = WeightReceiver(init_sync_group(
            host, port, rank_offset + self.rank, world_size, backend, timeout_s,
            self.device if backend == "nccl" else None))

    def receive_weights(self) -> int:
        model = self.model_runner.model

        def load(named_tensors: list[tuple[str, torch.Tensor]], version: int) -> None:
            model.load_weights(weights=named_tensors)

        return self._weight_receiver.receive(load)
