"""Ray actors: FSDP learner ranks and rollout workers, joined by a dedicated weight-sync group.

Both are plain classes wrapped with `ray.remote` by orchestration/cluster.py, so they can also be driven in-process.
Sync group ranks: 0 is learner rank 0 (the sender), 1..N are the rollout workers.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import torch

from engine.config import Config
from engine.orchestration.storage import check_storage, model_paths
from engine.rollout.backend import weights_digest
from engine.telemetry.phases import profiled


def _limit_threads(n: int) -> None:
    # Several actors share a few cores: one BLAS pool per process, not one per core per process.
    torch.set_num_threads(max(1, n))


def dist_backend(gpu: bool) -> str:
    """The process groups' backend (FSDP and weight sync): NCCL on GPUs, gloo on CPU. `gpu` is the driver's decision
    for the whole cluster, not this node's."""
    return "nccl" if gpu else "gloo"


def interface_of(ip: str) -> str | None:
    """The network interface whose IPv4 address is `ip` (Linux), or None."""
    import fcntl
    import socket
    import struct

    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:  # SIOCGIFADDR: the interface's address
                raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue  # no IPv4 address
        if socket.inet_ntoa(raw[20:24]) == ip:
            return name
    return None


def bind_collectives_to_node_ip() -> str | None:
    """Make gloo and NCCL open their connections on the interface that holds this node's Ray IP.

    Unset, gloo binds to whatever the hostname resolves to: on a Debian-style host that is a loopback address
    (127.0.1.1), which it then advertises to its peers, so ranks on other nodes cannot connect. A user's own
    GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME win. Returns the interface chosen."""
    import ray

    name = interface_of(ray.util.get_node_ip_address())
    if name is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", name)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", name)
    return name


def node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


def rendezvous_address() -> tuple[str, int]:
    """This node's IP and a free port on it: where a process group's TCP store can be hosted."""
    import ray

    from engine.sync import free_port

    ip = ray.util.get_node_ip_address()
    return ip, free_port(ip)


def _close(group) -> None:
    """Close an old sync group; one that was aborted, or whose peer died, may fail to: it is dropped anyway."""
    try:
        group.close()
    except Exception:  # noqa: BLE001 - a broken group's shutdown has nothing left to release
        pass


def _teed(tensors, packer):
    """The (name, tensor) stream, each tensor also copied into `packer` as it passes."""
    for name, t in tensors:
        packer.add(name, t)
        yield name, t


class ActorProcess:
    """What the driver asks of any actor's process: who it is, where it runs, and how many BLAS threads it uses."""

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def cores(self) -> int:
        return len(os.sched_getaffinity(0))

    def set_threads(self, n: int) -> None:
        _limit_threads(n)

    def threads(self) -> int:
        return torch.get_num_threads()


class LearnerWorker(ActorProcess):
    """One FSDP2 rank. All ranks receive the same samples and build the same tensors from them with their own
    policy's ids (engine/learner/batch.py); each trains its balanced shard.

    Learner rank 0 hosts both TCP stores (the FSDP group's and the weight-sync group's), so their
    address is asked of it with `rendezvous` before `start` / `join_sync`.
    """

    def __init__(self, cfg: Config, rank: int, world_size: int, threads: int = 1, gpu: bool = False):
        _limit_threads(threads)
        bind_collectives_to_node_ip()
        check_storage(f"learner rank {rank}", node_ip(), read=model_paths(cfg.model.path),
                      write=[Path(cfg.trainer.output_dir)])
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.dist_backend = dist_backend(gpu)
        self.learner = None
        self.sender = None
        self.shared = None  # the buffer a colocated rollout worker loads from (engine/sync/ipc.py)

    def rendezvous(self) -> tuple[str, int]:
        return rendezvous_address()

    def start(self, address: tuple[str, int]) -> None:
        """Join the learners' process group (NCCL on GPU, gloo on CPU), hosted at rank 0's `rendezvous`
        address, and build the sharded policy."""
        import torch.distributed as dist

        from engine.learner.fsdp import FSDPLearner, LearnerSpec

        backend = self.dist_backend
        if backend == "nccl":
            torch.cuda.set_device(0)  # Ray gives each learner actor its own GPU as device 0
        dist.init_process_group(backend, init_method=f"tcp://{address[0]}:{address[1]}", rank=self.rank,
                                world_size=self.world_size, timeout=timedelta(minutes=10))
        self.learner = FSDPLearner(LearnerSpec.of(self.cfg), self.rank, self.world_size)

    def join_sync(self, host: str, port: int, world_size: int) -> None:
        """Learner rank 0 becomes sync rank 0; the other ranks only help gather the shards."""
        from engine.sync import WeightSender, init_sync_group

        group = None
        if self.sender is not None and self.sender.group is not None:
            _close(self.sender.group)
        if self.rank == 0 and world_size > 1:  # world 1: the only worker is colocated, nothing to broadcast
            group = init_sync_group(host, port, 0, world_size, backend=self.dist_backend, timeout_s=self.cfg.ray.sync_timeout_s)
        dtype = None if self.cfg.model.dtype == "float32" else getattr(torch, self.cfg.model.dtype)
        mb = self.cfg.ray.sync_bucket_mb
        self.sender = WeightSender(group, bucket_bytes=None if mb is None else mb << 20, dtype=dtype)

    def send_weights(self, version: int, share: bool = False):
        """Broadcast the weights to the sync group (every rank gathers); with `share`, rank 0 also packs them,
        in the same pass, into a buffer for its colocated worker and returns the handle (None elsewhere)."""
        from engine.sync import full_state_iter, state_specs
        from engine.sync.ipc import SharedPacker

        hf = self.learner.hf
        tensors = full_state_iter(hf)
        if share and self.rank == 0:
            self.shared = SharedPacker(state_specs(hf), self.learner.device, self.sender.dtype)
            tensors = _teed(tensors, self.shared)
        self.sender.send(tensors, version, specs=state_specs(hf), checksum=self.cfg.ray.sync_checksum)
        return self.shared.share(version) if share and self.rank == 0 else None

    def abort_sync(self) -> bool:
        """Abort rank 0's side of the sync group (a receiver died mid-broadcast); runs beside a blocked
        send_weights, in the actor's own control thread (orchestration/cluster.py). False when it cannot."""
        return self.sender is not None and self.sender.group is not None and self.sender.group.abort()

    def release_shared(self) -> None:
        self.shared.release()
        self.shared = None

    def weights_digest(self) -> str:
        """Digest of the full (gathered) policy weights; collective, so every rank must call it."""
        trained = {n for n, _ in self.learner.hf.named_parameters()}  # buffers are not synced
        return weights_digest([(n, t) for n, t in self.learner.named_full_tensors() if n in trained])

    def update(self, samples: list) -> dict[str, float]:
        """One GRPO step on scored samples, each carrying its group advantage."""
        with profiled("learner"):
            advantages = torch.tensor([s.advantage for s in samples], dtype=torch.float32)
            return self.learner.update(self.learner.batch(samples), advantages)

    def sft_update(self, samples: list) -> dict[str, float]:
        """One supervised step on teacher-forced samples (engine/rollout/teacher.py)."""
        return self.learner.sft_update(self.learner.batch(samples, self.cfg.sft.key_weight))

    def export(self, path: str) -> None:
        self.learner.export(path)

    def save_checkpoint(self, root: str, extra: dict) -> str:
        return str(self.learner.save_checkpoint(root, extra))

    def load_checkpoint(self, path: str) -> dict:
        return self.learner.load_checkpoint(path)


class RolloutWorker(ActorProcess):
    """Generation + tools + video decoding for a slice of the prompts; weights arrive over the sync group."""

    def __init__(self, cfg: Config, index: int, threads: int = 1, gpu: bool = False):
        from engine.orchestration.session import build_backend

        _limit_threads(threads)
        bind_collectives_to_node_ip()  # before the backend starts: vLLM's processes inherit it
        check_storage(f"rollout worker {index}", node_ip(), read=model_paths(cfg.model.path))
        self.cfg, self.index = cfg, index
        self.dist_backend = dist_backend(gpu)
        self.parts = build_backend(cfg, "cuda" if gpu else "cpu")  # (backend, tokenizer, model config)
        self.rollout = None
        self.receiver = None

    def start(self, records: dict, videos: list = ()) -> None:
        """Build the rollout engine over `records` (video records: captions for clip_retrieval), sent by the
        driver, which alone reads the data; again after Ray restarts this worker. Idempotent. `videos`: a few of
        the run's video files (orchestration/storage.py: video_probe), checked readable from this node."""
        from engine.orchestration.session import build_rollout

        check_storage(f"rollout worker {self.index}", node_ip(), read=list(videos))
        if self.rollout is None:
            self.rollout = build_rollout(self.cfg, *self.parts, records)

    def join_sync(self, host: str, port: int, rank: int, world_size: int) -> None:
        from engine.sync import WeightReceiver, init_sync_group

        if self.receiver is not None:
            _close(self.receiver.group)
        group = init_sync_group(host, port, rank, world_size, backend=self.dist_backend, timeout_s=self.cfg.ray.sync_timeout_s)
        self.receiver = WeightReceiver(group)

    def idle(self) -> int:
        """Returns once every call queued before it (a rollout) has finished: the sync handshake. The version of
        the weights held."""
        return self.rollout.backend.weight_version

    def receive_weights(self) -> int:
        backend = self.rollout.backend
        if not backend.loads_once:
            return self.receiver.receive(backend.load_weights)  # bucket by bucket, into the model's tensors
        # The bucket buffers are reused: keep copies until the whole sync is in, in host memory, so the GPU never
        # holds a second copy of the weights beside the engine's (15.5 GB for a 7B policy in bf16).
        staged: list = []

        def stage(named, _version) -> None:
            staged.extend((n, t.to("cpu", copy=True)) for n, t in named)

        version = self.receiver.receive(stage)
        backend.load_weights(staged, version)
        return version

    def load_shared(self, shared) -> int:
        """Weights from the colocated learner rank 0's buffer (engine/sync/ipc.py)."""
        from engine.sync.ipc import load_shared

        return load_shared(shared, self.rollout.backend.load_weights)

    def weights_digest(self) -> str:
        return self.rollout.backend.weights_digest()

    def generate(self, rows: list, group_size: int, params, first_prompt: int):
        """(batch, stats, weight version used): G samples for each row; `first_prompt` is the rows' position
        in the step (it fixes their seeds). The version lets the driver reject work done on stale weights,
        e.g. by a worker Ray restarted with its initial weights."""
        with profiled("rollout_worker"):
            return (*self.rollout.run(rows, group_size, params, first_prompt), self.rollout.backend.weight_version)
