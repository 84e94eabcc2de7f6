"""A KV cache allocated once per generate call: each decode step writes its token's keys and values in place.

transformers' DynamicCache grows by `torch.cat` of every layer's whole K and V at every step — a copy of the
entire cache per token, O(length^2) bytes per sequence (`aten::cat` was 9% of the rollout worker's CPU). Here
each layer holds one buffer sized for the longest sequence the call can reach (prompt + max_new_tokens);
`update` writes the new positions and returns a view of the filled part, so attention sees exactly the K/V
DynamicCache would have given it and the attention mask keeps its usual [batch, filled] shape. A row that
finishes leaves by `batch_select_indices`: one copy of the filled part per finishing step, not per token.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One decoder layer's K/V in a [batch, heads, capacity, dim] buffer; `keys`/`values` view the filled part."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        b, h, _, dk = key_states.shape
        self._keys = key_states.new_empty((b, h, self.capacity, dk))
        self._values = value_states.new_empty((b, h, self.capacity, value_states.shape[-1]))
        self._view()
        self.is_initialized = True

    def _view(self) -> None:
        self.keys = self._keys[:, :, : self.length]
        self.values = self._values[:, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache holds {self.capacity} positions; writing up to {end}")
        self._keys[:, :, self.length:end] = key_states
        self._values[:, :, self.length:end] = value_states
        self.length = end
        self._view()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the rows `indices` (repeats allowed): copies only the filled positions into a fresh buffer."""
        if not self.is_initialized:
            return
        for name in ("_keys", "_values"):
            old = getattr(self, name)
            new = old.new_empty((len(indices), *old.shape[1:]))
            new[:, :, : self.length] = old[indices, :, : self.length]
            setattr(self, name, new)
        self._view()


def preallocated_cache(config, capacity: int) -> Cache:
    """A cache of PreallocatedLayers for `config`'s decoder, each `capacity` positions long."""
    text = config.get_text_config(decoder=True)
    types = getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers
    if any(t != "full_attention" for t in types):
        # Sliding-window layers keep only their window: DynamicCache(config=...) builds those right.
        raise ValueError(f"preallocated_cache: full-attention layers only, the model has {sorted(set(types))}")
    return Cache(layers=[PreallocatedLayer(capacity) for _ in types])
