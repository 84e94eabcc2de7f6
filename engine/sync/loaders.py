"""In-place weight loader for the rollout side: a transformers module.

It gives `WeightReceiver.receive` a `load(named_tensors, version)` that copies each bucket's tensors into the
running model's own storage: no new model, no engine restart. (The vLLM backend loads through
`VLLMBackend.load_weights`.)
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from engine.sync.errors import WeightSyncError


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
