"""KV of sequences the transformers backend already ran, reused when a later request extends one.

An agent turn's request is the previous turn's request plus the model's output plus an observation: with
its KV kept, only the output's last token and the observation are prefilled, and the tower runs only on
the observation's video. Entries are matched by token prefix and by the identity of the videos their pads
stand for, used once (the continuation files its longer sequence again), dropped least recently used past
a byte budget, and all dropped when the weights change.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from engine.rollout.batch import VideoInput


@dataclass(eq=False)
class Prefix:
    ids: list[int]  # every token whose KV is held
    videos: list[VideoInput]  # the videos of those ids' pad runs, in order
    keys: list[torch.Tensor]  # per layer [kv_heads, len(ids), head_dim]
    values: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class PrefixCache:
    def __init__(self, capacity_bytes: int):
        if capacity_bytes < 0:
            raise ValueError(f"prefix cache capacity must be >= 0 bytes, got {capacity_bytes}")
        self.capacity_bytes = int(capacity_bytes)
        self._entries: OrderedDict[int, Prefix] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, prompt_ids: list[int], videos: list[VideoInput]) -> Prefix | None:
        """The longest entry that is a strict prefix of `prompt_ids` over the same leading videos."""
        best = None
        for p in self._entries.values():
            n = len(p.ids)
            if (n < len(prompt_ids) and (best is None or n > len(best.ids)) and len(p.videos) <= len(videos)
                    and all(a is b for a, b in zip(p.videos, videos)) and prompt_ids[:n] == p.ids):
                best = p
        return best

    def put(self, prefix: Prefix) -> None:
        if prefix.nbytes > self.capacity_bytes:
            return
        self._entries[id(prefix)] = prefix
        self._bytes += prefix.nbytes
        while self._bytes > self.capacity_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.nbytes

    def discard(self, prefix: Prefix | None) -> None:
        if prefix is not None and self._entries.pop(id(prefix), None) is not None:
            self._bytes -= prefix.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
