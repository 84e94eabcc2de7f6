"""The Ray side of a run: placement of learner ranks and rollout workers, weight sync, fault handling.

A local Ray cluster is started unless `ray.address` is set. Learners form one FSDP2 group (gloo on
CPU, NCCL on GPU); learner rank 0 and every rollout worker form a separate weight-sync group.
A rollout worker that dies is restarted by Ray; its unfinished prompts are re-run after the sync
group is rebuilt and the restarted worker has the current weights, so no sample is lost or duplicated.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Callable

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError

ACTOR_LOST = (RayActorError, ActorUnavailableError)  # died, or restarted while a call was in flight

from engine.config import Config
from engine.errors import ClusterFailure
from engine.orchestration.actors import LearnerWorker, RolloutWorker
from engine.orchestration.ray_start import cluster_address, stop_ray, wait_for_ray
from engine.rollout.batch import RolloutBatch
from engine.rollout.grouped import RolloutStats


def split_cores(cores: int, role_actors: int, all_actors: int, overlap: bool) -> int:
    """BLAS threads for each of `role_actors` actors of one role on a node of `cores` cores. Rollout workers compute
    together, and learner ranks together, but the two roles take turns (rollout, update, sync) unless asynchronous
    GRPO overlaps them: then all `all_actors` on the node share the cores."""
    return max(1, cores // max(1, all_actors if overlap else role_actors))


def split_evenly(n: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) ranges of n items over `parts` workers, sizes differing by at most one; empty ranges dropped."""
    bounds = [n * k // parts for k in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


class Cluster:
    def __init__(self, cfg: Config, log: Callable[[str], None] = print, records: dict | None = None):
        """Launch and start (see `launch` and `start`)."""
        self._launch(cfg, log)
        self.start(records)

    @classmethod
    def launch(cls, cfg: Config, log: Callable[[str], None] = print) -> Cluster:
        """Create every actor and set the learners building (process group, sharded policy) and the rollout
        workers loading theirs, waiting on nothing: the driver goes on (checking the data) meanwhile.
        `start` then waits for them."""
        cluster = cls.__new__(cls)
        cluster._launch(cfg, log)
        return cluster

    def _launch(self, cfg: Config, log: Callable[[str], None]) -> None:
        from engine.orchestration.placement import resolve

        cfg = resolve(cfg, log)
        self.cfg = cfg
        self.log = log
        n_workers, n_learners = cfg.ray.rollout_workers, cfg.ray.learners
        wait_for_ray(cfg)  # the CLI began starting it before importing the trainer (orchestration/ray_start.py)
        if not cluster_address(cfg) and ray.cluster_resources().get("CPU", 0) < n_workers + n_learners:
            stop_ray()  # a local instance started for a smaller layout (an earlier phase, another test)
            wait_for_ray(cfg)
        from engine.orchestration.plan import check_fits

        check_fits(cfg)  # a layout that cannot fit is refused here, naming the key to change, before any actor starts
        # GPUs or not is the cluster's answer, not this process's: a driver on a CPU-only head node still runs its
        # actors on the GPU nodes.
        gpu = ray.cluster_resources().get("GPU", 0) >= 1
        self.gpu = gpu
        # BLAS threads per actor while it builds, as if every actor were on this node; `start` then sets each
        # actor's from the node it landed on (fit_threads).
        learner_threads, worker_threads = (split_cores(os.cpu_count() or 1, n, n_workers + n_learners,
                                                       bool(cfg.trainer.staleness)) for n in (n_learners, n_workers))
        res = {"num_gpus": 1} if gpu else {"num_cpus": 1}
        place = [{} for _ in range(max(n_workers, n_learners))]
        # ray.colocate: learner rank i and rollout worker i share bundle i (its GPU, on GPUs). Worker 0 then takes the
        # weights from learner rank 0 through a shared buffer (engine/sync/ipc.py: CUDA IPC on GPU), not the sync
        # group: NCCL refuses two ranks on one device.
        self.colocated = cfg.ray.colocate
        if cfg.ray.colocate:
            from ray.util.placement_group import placement_group
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            group = placement_group([{"GPU": 1, "CPU": 2} if gpu else {"CPU": 2}] * n_learners, strategy="PACK")
            ray.get(group.ready())
            res = {"num_gpus": 0.5, "num_cpus": 1} if gpu else {"num_cpus": 1}
            place = [{"scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)}
                     for i in range(n_learners)]
        # Every actor is created before any is waited on, so learners and rollout workers start in parallel.
        # "control": a second thread for abort_sync, which must run while send_weights is blocked.
        learner_cls = ray.remote(concurrency_groups={"control": 1}, **res)(LearnerWorker)
        learner_where = {"resources": dict(cfg.ray.learner_resources)} if cfg.ray.learner_resources else {}
        self.learners = [learner_cls.options(**place[r], **learner_where).remote(cfg, r, n_learners, learner_threads,
                                                                                 gpu) for r in range(n_learners)]
        worker_cls = ray.remote(max_restarts=-1, max_task_retries=0, **res)(RolloutWorker)
        worker_where = {"resources": dict(cfg.ray.rollout_resources)} if cfg.ray.rollout_resources else {}
        self.workers = [worker_cls.options(**place[i], **worker_where).remote(cfg, i, worker_threads, gpu)
                        for i in range(n_workers)]
        # Rank 0's address goes to every rank as an object reference: Ray resolves it before `start` runs, so
        # nothing here waits for rank 0 to come up.
        address = self.learners[0].rendezvous.remote()
        self._building = [lw.start.remote(address) for lw in self.learners]

    def start(self, records: dict | None = None, videos: list = ()) -> None:
        """Hand the rollout workers the video records, wait for every actor, and sync the first weights.

        `records`: those of the checked data (engine/data/sources.py), read here, in the driver, when not given;
        rollout workers never read or write the dataset themselves. `videos`: the rows' video files, of which each
        worker checks a few are readable from its node (orchestration/storage.py) before any step."""
        from engine.orchestration.storage import video_probe

        if records is None:
            from engine.data.sources import load_data

            records = load_data(self.cfg.data, self.log).records
        # Records go by a method, not the constructor: Ray restarts a worker from its constructor arguments,
        # and large ones would live in the object store at the mercy of its reference counting.
        self._records = ray.put(records)
        probe = video_probe([*videos, *(r.path for r in records.values())])
        ray.get(self._building + [w.start.remote(self._records, probe) for w in self.workers])
        self.fit_threads()
        self.version = -1  # the first sync sends version 0
        self._sync_lock = threading.Lock()  # one-step-off: the rollout thread may sync (recovering a worker) too
        self.restarts = 0
        self._join_sync()
        self.sync_weights()

    def fit_threads(self) -> dict[str, int]:
        """Give each actor the BLAS threads of its own node: the node's cores (Ray's CPU count for it, at most the
        cores the process may run on) split among the actors of its role there, or among all of them there when
        rollout and update overlap (trainer.max_staleness). Returns {actor name: threads}."""
        named = self._named_actors()
        asked = ray.get([actor.node.remote() for _, actor in named] + [actor.cores.remote() for _, actor in named])
        nodes, cores = asked[:len(named)], asked[len(named):]
        declared = {n["NodeID"]: n["Resources"].get("CPU", 1) for n in ray.nodes() if n["Alive"]}
        overlap = bool(self.cfg.trainer.staleness)
        peers = Counter(zip(nodes, [name.split(" ")[0] for name, _ in named]))
        threads = {}
        for (name, actor), node, have in zip(named, nodes, cores):
            role = name.split(" ")[0]
            on_node = peers[(node, "learner")] + peers[(node, "rollout")]
            threads[name] = split_cores(int(min(declared.get(node, have), have)), peers[(node, role)], on_node, overlap)
        ray.get([actor.set_threads.remote(threads[name]) for name, actor in named])
        self.threads = threads
        return threads

    # ------------------------------------------------------------------ weight sync

    def _remote_workers(self) -> list:
        """The workers the sync group broadcasts to: all but a colocated worker 0."""
        return self.workers[1:] if self.colocated else self.workers

    def _join_sync(self) -> None:
        """(Re)build the sync group: learner rank 0 is rank 0, the k-th remote worker is rank k + 1."""
        remote = self._remote_workers()
        (host, port), world = ray.get(self.learners[0].rendezvous.remote()), 1 + len(remote)
        ray.get([lw.join_sync.remote(host, port, world) for lw in self.learners]
                + [w.join_sync.remote(host, port, i + 1, world) for i, w in enumerate(remote)])

    def sync_weights(self, newer_than: int = -1) -> float:
        """Broadcast the learners' weights under a new version number, above every earlier one and above
        `newer_than` (a resumed checkpoint's); the version is owned here. Returns seconds taken.

        Handshake first: the broadcast starts only once every worker has finished what it was running (one-step-off
        training syncs while the next rollout runs). Otherwise learner rank 0 would wait inside the collective for
        a busy worker, the other ranks behind it, until the group's timeout aborted the run. One sync at a time:
        a rollout thread recovering a worker may sync too."""
        with self._sync_lock:
            t0 = time.perf_counter()
            for attempt in range(3):
                try:
                    self._sync_once(newer_than)
                    break
                except ACTOR_LOST as e:
                    if attempt == 2 or self.role_of(e).startswith("learner"):
                        raise  # a learner rank: only a restart of the whole cluster helps (orchestration/supervisor.py)
                    self.restarts += 1
                    self.log("a rollout worker died during a weight sync; waiting for its restart, rebuilding the "
                             "sync group and sending the weights again")
                    self._restart_workers()
                    self._join_sync()
            return time.perf_counter() - t0

    def _wait_idle(self) -> None:
        """The handshake: returns once every worker has finished the calls queued before it."""
        self._gather([w.idle.remote() for w in self.workers])

    def _sync_once(self, newer_than: int) -> None:
        self._wait_idle()
        self.version = max(self.version, newer_than) + 1
        sends = [lw.send_weights.remote(self.version, self.colocated) for lw in self.learners]
        receives = [w.receive_weights.remote() for w in self._remote_workers()]
        try:
            # Sends too: a learner failing mid-send would leave the receivers waiting in the broadcast.
            self._gather(receives + sends)
        except RayTaskError:
            # Rank 0's broadcast failed; when it was a receiver dying, recover that worker as below.
            ready, _ = ray.wait(receives, num_returns=len(receives), timeout=5.0)
            for ref in ready:
                try:
                    ray.get(ref)
                except ACTOR_LOST as lost:
                    raise lost from None
                except Exception:
                    pass
            raise
        except ACTOR_LOST as e:
            if self.role_of(e).startswith("learner"):
                raise
            # Rank 0 may be waiting for the dead receiver inside the collective (NCCL would until its timeout,
            # then its watchdog kills the learner): abort its side, so the send returns now, and let it fail.
            if not ray.get(self.learners[0].abort_sync.options(concurrency_group="control").remote()):
                self.log("a rollout worker died during a weight sync and its group cannot be aborted: learner "
                         "rank 0's broadcast ends when the group notices the dead peer, at the latest after "
                         f"ray.sync_timeout_s={self.cfg.ray.sync_timeout_s}")
            ray.wait(sends, num_returns=len(sends))
            raise
        shared = self._gather(sends)[0]
        if self.colocated:  # worker 0 loads from rank 0's buffer, which is freed once it has
            ray.get(self.workers[0].load_shared.remote(shared))
            ray.get(self.learners[0].release_shared.remote())

    def _recover(self) -> None:
        """After a worker died: wait for Ray's restart, rebuild the sync group, resend the current weights
        (under a new version number: a sync group's versions only increase)."""
        self.restarts += 1
        self.log("a rollout worker died; waiting for its restart, then re-syncing the weights")
        self._restart_workers()
        self.fit_threads()  # a restarted worker was built with the driver's guess, on whichever node took it
        self._join_sync()
        self.sync_weights()

    def _restart_workers(self) -> None:
        """Wait until Ray has restarted every dead worker and each has its records again."""
        deadline, short_since = time.monotonic() + 600, None
        while True:
            try:
                # A restarted one needs them. Its videos are not checked again: a folder gone mid-run fails its
                # prompts, each named (tests/orchestration/test_video_folder_gone.py), not the run.
                self._gather([w.start.remote(self._records) for w in self.workers])
                break
            except ACTOR_LOST:  # still restarting; never, if its node is gone and no other has room
                short_since = self._watch_capacity(short_since)
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def _gather(self, refs: list) -> list:
        """ray.get(refs), with two guards. The first failure is raised as soon as it happens: a dead learner rank's
        peers wait for it inside their collective, and ray.get in order would wait for them first. And while waiting,
        the live nodes must still have room for every actor: Ray queues calls to an actor it is restarting, forever
        when its node is gone and no other node has the resources it needs. Short for ray.sync_timeout_s: a
        ClusterFailure naming what is missing."""
        pending, short_since = list(refs), None
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=5.0)
            if ready:
                ray.get(ready)
            else:
                short_since = self._watch_capacity(short_since)
        return ray.get(refs)

    def _watch_capacity(self, short_since: float | None) -> float | None:
        """None while the live nodes have room for every actor, else since when they have not; a ClusterFailure
        naming what is missing once that has lasted ray.sync_timeout_s."""
        missing = self._missing_resources()
        if not missing:
            return None
        short_since = short_since or time.monotonic()
        limit = self.cfg.ray.sync_timeout_s
        if time.monotonic() - short_since > limit:
            raise ClusterFailure(
                f"the live Ray nodes have been short of what this run's actors need for ray.sync_timeout_s={limit:g} s "
                f"(an actor's node is gone?): {missing}; add a node with those resources, or fewer ray.learners / "
                "ray.rollout_workers")
        return short_since

    def _missing_resources(self) -> dict[str, str]:
        """{resource: "need N, have M"} of what the live nodes lack for every learner and rollout worker at once
        (the CPU/GPU each takes and the custom resources of ray.*_resources); {} when colocated (placement groups
        reserve their bundles)."""
        if self.colocated:
            return {}
        unit = "GPU" if self.gpu else "CPU"
        need: dict[str, float] = {unit: len(self.learners) + len(self.workers)}
        for count, extra in ((len(self.learners), self.cfg.ray.learner_resources),
                             (len(self.workers), self.cfg.ray.rollout_resources)):
            for name, amount in extra.items():
                need[name] = need.get(name, 0.0) + count * amount
        have = ray.cluster_resources()
        return {name: f"need {n:g}, have {have.get(name, 0):g}" for name, n in need.items() if have.get(name, 0) < n}

    # ------------------------------------------------------------------ rollout

    def rollout(self, rows: list, group_size: int, params) -> tuple[RolloutBatch, RolloutStats]:
        """G samples for every row, prompts split evenly across workers; failed shares are re-run."""
        pending = dict(enumerate(split_evenly(len(rows), len(self.workers))))
        results: dict[int, tuple[RolloutBatch, RolloutStats]] = {}
        while pending:
            # Read the version and queue the work under the sync lock. A sync's handshake then never slips in
            # between (a share queued after a worker's handshake but before its receive would run first, and
            # learner rank 0 would wait for it inside the broadcast until the sync timeout: one-step-off with
            # dynamic sampling refills mid-sync). Each share must report `expected`: a newer sync queues behind it.
            with self._sync_lock:
                expected = self.version
                refs = {k: self.workers[i % len(self.workers)].generate.remote(rows[a:b], group_size, params, a)
                        for i, (k, (a, b)) in enumerate(pending.items())}
            failed = False
            for k, ref in refs.items():
                try:
                    batch, stats, version = self._gather([ref])[0]
                except ACTOR_LOST:
                    failed = True
                    continue
                if version != expected:  # a restarted worker still on its initial weights
                    failed = True
                    continue
                stats.weight_version = version
                results[k] = (batch, stats)
                pending.pop(k)
            if failed:
                self._recover()
        batches = [results[k] for k in sorted(results)]
        samples, groups = [], 0
        for batch, _ in batches:
            samples += [replace(x, group=x.group + groups) for x in batch.samples]
            groups += len(batch.samples) // group_size
        return RolloutBatch(samples, group_size), RolloutStats.merged([st for _, st in batches])

    # ------------------------------------------------------------------ learners

    def update(self, samples: list) -> dict[str, float]:
        """One GRPO step on all learner ranks (same samples, advantages set; each trains its shard); rank 0's
        metrics."""
        ref = ray.put(samples)  # serialised once, not once per learner
        return self._gather([lw.update.remote(ref) for lw in self.learners])[0]

    def sft_update(self, samples: list) -> dict[str, float]:
        """One supervised step on all learner ranks (same samples; each trains its shard); rank 0's metrics."""
        ref = ray.put(samples)  # serialised once, not once per learner
        return self._gather([lw.sft_update.remote(ref) for lw in self.learners])[0]

    def export(self, path: str) -> None:
        """The learners' policy as a Hugging Face folder at `path` (model.dtype, tokenizer, processor files)."""
        self._gather([lw.export.remote(path) for lw in self.learners])

    def save_checkpoint(self, root: str, extra: dict) -> str:
        return self._gather([lw.save_checkpoint.remote(root, extra) for lw in self.learners])[0]

    def load_checkpoint(self, path: str) -> dict:
        return self._gather([lw.load_checkpoint.remote(path) for lw in self.learners])[0]

    def weights_digests(self) -> tuple[str, list[str]]:
        """(learner digest, each rollout worker's digest): all equal right after a sync."""
        learner = ray.get([lw.weights_digest.remote() for lw in self.learners])[0]
        return learner, ray.get([w.weights_digest.remote() for w in self.workers])

    def role_of(self, error: BaseException) -> str:
        """Which actor a lost-actor error is about: "learner rank r", "rollout worker i", or "an actor"."""
        actor_id = getattr(error, "actor_id", None)
        for name, actor in self._named_actors():
            if actor_id and actor._actor_id.hex() == actor_id:
                return name
        return "an actor"

    def dead(self, timeout_s: float = 10.0) -> list[str]:
        """The actors that no longer answer (after a failure: who died), by role."""
        probes = {name: actor.pid.remote() for name, actor in self._named_actors()}
        ray.wait(list(probes.values()), num_returns=len(probes), timeout=timeout_s)
        out = []
        for name, ref in probes.items():
            try:
                ray.get(ref, timeout=0)
            except ACTOR_LOST:  # dead or restarting; a GetTimeoutError is a busy actor, alive
                out.append(name)
            except GetTimeoutError:
                pass
        return out

    def _named_actors(self) -> list[tuple[str, object]]:
        return ([(f"learner rank {r}", lw) for r, lw in enumerate(self.learners)]
                + [(f"rollout worker {i}", w) for i, w in enumerate(self.workers)])

    def kill_worker(self, index: int) -> None:
        """Kill one rollout worker as a crash would (Ray restarts it); for fault tests and drills."""
        ray.kill(self.workers[index], no_restart=False)

    def shutdown(self, keep_ray: bool = False) -> None:
        """Kill the actors; and Ray itself unless a next phase (GRPO after SFT) starts its actors on it."""
        for actor in self.learners + self.workers:
            ray.kill(actor, no_restart=True)
        if not keep_ray:
            stop_ray()
