"""A stand-alone process group for weight sync, built from a TCP store (gloo on CPU, NCCL on GPU).

The group is made directly from the backend's constructor over a `PrefixStore`, never through
`init_process_group` / `new_group`, so it is invisible to `torch.distributed`'s global state: a
learner process can hold its FSDP default group and this group side by side, and a rollout
worker needs no default group at all. Members: rank 0 is learner rank 0 (the sender), ranks
1..N are the rollout workers. Collectives are issued on the group object itself.
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from engine.sync.errors import WeightSyncError

log = logging.getLogger(__name__)

STORE_PREFIX = "vthink-weight-sync/"


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct TCP ports that were free a moment ago on `host` (racy by nature).

    All sockets stay bound until every port is picked, so the OS cannot hand out one twice.
    """
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host`, for the sync store."""
    return free_ports(1, host)[0]


@dataclass
class SyncGroup:
    """A member's handle on the weight-sync group; `device` is where its buffers live."""
    pg: dist.ProcessGroup
    rank: int
    world_size: int
    backend: str
    device: torch.device
    timeout: timedelta
    store: dist.Store = field(repr=False)  # kept alive: on rank 0 it is the TCP server
    impl: Any = field(default=None, repr=False)  # the backend object (ProcessGroupNCCL / ProcessGroupGloo)

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> dist.Work:
        """Asynchronous in-place broadcast of a contiguous tensor from group rank `src`."""
        opts = dist.BroadcastOptions()
        opts.rootRank = src
        opts.rootTensor = 0
        opts.timeout = self.timeout
        return self.pg.broadcast([tensor], opts)

    def close(self) -> None:
        """Release the backend's connections; the group cannot be used afterwards."""
        self.pg.shutdown()

    def finish(self, works: list) -> None:
        """Block the host until every broadcast in `works` has completed. NCCL's Work.wait only orders the current
        stream after the collective: without the synchronize a sender would return while its last buckets are
        still in flight, and a receiver's death would surface later, in an unrelated CUDA call."""
        for w in works:
            if w is not None:
                w.wait()
        if self.backend == "nccl":
            torch.cuda.current_stream(self.device).synchronize()

    def abort(self) -> bool:
        """Make a collective stuck on a dead peer return with an error now, not at the timeout: NCCL waits for it
        until then, and its watchdog then takes the whole process down. True when aborted; False, with a warning
        saying what happens instead, when this group cannot be. The group is unusable afterwards: rebuild it
        (init_sync_group with a fresh port)."""
        if self.backend == "gloo":
            log.warning("weight sync: a gloo group has no abort; a dead peer's closed connection fails the "
                        "broadcast by itself, at the latest after the sync timeout (%s)", self.timeout)
            return False
        if not hasattr(self.impl, "abort"):
            log.warning("weight sync: this torch's ProcessGroupNCCL has no abort(); the broadcast waits for the "
                        "dead peer until the sync timeout (%s, ray.sync_timeout_s)", self.timeout)
            return False
        self.impl.abort()
        return True


def init_sync_group(host: str, port: int, rank: int, world_size: int, backend: str = "gloo",
                    timeout_s: float = 300.0, device: torch.device | str | None = None
                    ) -> SyncGroup:
    """Join the weight-sync group; every member calls it with the same host, port and world size.

    Rank 0 (learner rank 0) hosts the TCP store on `host:port`; the call returns once all
    `world_size` members have connected. `backend` is "gloo" (buffers on CPU) or "nccl"
    (buffers on `device`, default the current CUDA device). Does not touch the default group.
    """
    if backend not in ("gloo", "nccl"):
        raise WeightSyncError(f"sync backend must be 'gloo' or 'nccl', got {backend!r}")
    if not 0 <= rank < world_size:
        raise WeightSyncError(f"sync rank {rank} is outside a group of {world_size}")
    timeout = timedelta(seconds=timeout_s)
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise WeightSyncError("sync backend 'nccl' needs a CUDA device; use 'gloo' on CPU")
        dev = torch.device(device) if device is not None else torch.device(
            "cuda", torch.cuda.current_device())
        if dev.type != "cuda":
            raise WeightSyncError(f"sync backend 'nccl' needs a CUDA device, got {dev}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu") if device is None else torch.device(device)
        if dev.type != "cpu":
            raise WeightSyncError(f"sync backend 'gloo' keeps its buffers on CPU, got {dev}")
    try:
        store = dist.TCPStore(host, port, world_size, rank == 0, timeout=timeout,
                              wait_for_workers=True)
    except (RuntimeError, OSError) as e:  # DistStoreError is a RuntimeError
        raise WeightSyncError(f"sync rank {rank}: cannot reach the sync store at {host}:{port} "
                              f"(world size {world_size}): {e}") from e
    prefix = dist.PrefixStore(STORE_PREFIX, store)
    pg = dist.ProcessGroup(prefix, rank, world_size)
    if backend == "gloo":
        impl = dist.ProcessGroupGloo(prefix, rank, world_size, timeout)
        kind = dist.ProcessGroup.BackendType.GLOO
    else:
        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = timeout
        impl = dist.ProcessGroupNCCL(prefix, rank, world_size, opts)
        kind = dist.ProcessGroup.BackendType.NCCL
    pg._set_default_backend(kind)
    # As vLLM's stateless_init_torch_distributed_process_group does: every member starts its collective sequence
    # numbers from the same store-agreed value, which NCCL's flight recorder and desync checks rely on.
    if hasattr(impl, "_set_sequence_number_for_group"):
        impl._set_sequence_number_for_group()
    pg._register_backend(torch.device(dev.type), kind, impl)
    return SyncGroup(pg, rank, world_size, backend, dev, timeout, store, impl)
