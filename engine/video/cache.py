"""Thread-safe LRU cache of decoded frames under a byte budget, with in-flight decode sharing."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable

import torch


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    shared: int  # frames another thread was already decoding: waited for, not decoded twice
    evictions: int
    bytes: int
    capacity_bytes: int
    entries: int


class FrameCache:
    """Decoded frames keyed by (file identity, frame index, decoded size).

    `acquire` splits wanted keys into cached frames, keys this caller must decode (claimed), and
    keys another thread is decoding right now (an Event to wait on). Claimed keys must be handed
    back with `release` (decoded or not), which wakes the waiters. A budget of 0 disables caching.
    """

    def __init__(self, capacity_bytes: int):
        if capacity_bytes < 0:
            raise ValueError(f"cache capacity must be >= 0 bytes, got {capacity_bytes}")
        self.capacity_bytes = int(capacity_bytes)
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._inflight: dict[Hashable, threading.Event] = {}
        self._bytes = 0
        self._hits = self._misses = self._shared = self._evictions = 0

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    def acquire(self, keys: list[Hashable]) -> tuple[dict, list, dict]:
        found: dict[Hashable, torch.Tensor] = {}
        claimed: list[Hashable] = []
        waiting: dict[Hashable, threading.Event] = {}
        with self._lock:
            for key in keys:
                if key in found or key in waiting or key in claimed:
                    continue
                tensor = self._entries.get(key) if self.enabled else None
                if tensor is not None:
                    self._entries.move_to_end(key)
                    found[key] = tensor
                    self._hits += 1
                elif self.enabled and key in self._inflight:
                    waiting[key] = self._inflight[key]
                else:
                    if self.enabled:
                        self._inflight[key] = threading.Event()
                    claimed.append(key)
                    self._misses += 1
        return found, claimed, waiting

    def put(self, key: Hashable, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if not self.enabled or nbytes > self.capacity_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.numel() * old.element_size()
            self._entries[key] = tensor
            self._bytes += nbytes
            while self._bytes > self.capacity_bytes:
                _, victim = self._entries.popitem(last=False)
                self._bytes -= victim.numel() * victim.element_size()
                self._evictions += 1

    def release(self, keys: list[Hashable]) -> None:
        """End the claims on `keys`, waking threads that wait for them."""
        with self._lock:
            for key in keys:
                event = self._inflight.pop(key, None)
                if event is not None:
                    event.set()

    def collect(self, waiting: dict[Hashable, threading.Event], timeout_s: float) -> tuple[dict, list]:
        """Wait for frames other threads are decoding -> (frames now cached, keys still missing)."""
        got: dict[Hashable, torch.Tensor] = {}
        missing: list[Hashable] = []
        for key, event in waiting.items():
            event.wait(timeout_s)
            with self._lock:
                tensor = self._entries.get(key)
                if tensor is not None:
                    self._entries.move_to_end(key)
                    got[key] = tensor
                    self._shared += 1
                else:  # the other decode failed, or the frame was evicted already
                    missing.append(key)
                    self._misses += 1
        return got, missing

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._shared, self._evictions, self._bytes,
                              self.capacity_bytes, len(self._entries))
