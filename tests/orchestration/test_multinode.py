"""Two Ray nodes on this machine (Ray's own ray.cluster_utils.Cluster): learners and rollout workers land on the nodes
their resource keys name, the weight-sync group's connections run over the node's Ray IP (this machine's hostname
resolves to loopback, as on a Debian-style host), GRPO steps train across the nodes, and losing the node of the only
rollout worker ends the run with an error naming what is missing instead of waiting forever."""
import os
import socket
import time
from pathlib import Path

import pytest
import ray
from ray_testlib import small_config

from engine.errors import ClusterFailure, ConfigError
from engine.config import load_config
from engine.orchestration.cluster import Cluster
from engine.orchestration.ray_start import stop_ray
from engine.recipes.grpo import Trainer
from engine.telemetry.metrics import MetricsLog


def tcp_endpoints(pid: int) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """(local, remote) address of every connected IPv4 TCP socket the process holds, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])

    def address(text: str) -> tuple[str, int]:
        ip, port = text.split(":")
        return socket.inet_ntoa(bytes.fromhex(ip)[::-1]), int(port, 16)

    out = []
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes and fields[3] == "01":  # ESTABLISHED
            out.append((address(fields[1]), address(fields[2])))
    return out


def connections_between(pid_a: int, pid_b: int) -> list[tuple[str, str]]:
    """(a's IP, b's IP) of each TCP connection from process a to process b."""
    b_local = {local for local, _ in tcp_endpoints(pid_b)}
    return [(local[0], remote[0]) for local, remote in tcp_endpoints(pid_a) if remote in b_local]


@pytest.fixture()
def two_nodes():
    from ray.cluster_utils import Cluster as RayCluster

    stop_ray()
    head = RayCluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"near": 4}})
    far = head.add_node(num_cpus=1, resources={"far": 1})
    try:
        yield head, far
    finally:
        stop_ray()
        head.shutdown()


def test_resource_keys_choose_nodes_and_are_checked():
    cfg = load_config(None, ["ray.learner_resources={near: 1}", "ray.rollout_resources.far=1"])
    assert cfg.ray.learner_resources == {"near": 1.0} and cfg.ray.rollout_resources == {"far": 1.0}
    for bad, key in (("ray.rollout_resources={far: 0}", "ray.rollout_resources.far"),
                     ("ray.learner_resources={GPU: 1}", "ray.learner_resources.GPU"),
                     ("ray.learner_resources=[near]", "ray.learner_resources")):
        with pytest.raises(ConfigError) as err:
            load_config(None, [bad])
        assert err.value.key == key
    with pytest.raises(ConfigError, match="placement group"):
        load_config(None, ["ray.colocate=true", "ray.learner_resources={near: 1}"])


def test_the_auto_layout_of_a_joined_cluster_counts_its_nodes_resources(tmp_path, two_nodes):
    from engine.orchestration.placement import resolve

    head, _ = two_nodes
    logs = []
    cfg = resolve(small_config(tmp_path, f"ray.address={head.address}", "ray.rollout_workers=auto"), logs.append)
    memory = ray.cluster_resources()["memory"] / (1 << 30)
    assert cfg.ray.rollout_workers == 1
    assert f"(auto: 3 cores, {memory:.1f} GiB available, no GPU;" in logs[0], logs  # 2 + 1 cores, not this machine's


def test_training_across_two_nodes_then_losing_the_rollout_node(tmp_path, two_nodes):
    head, far = two_nodes
    cfg = small_config(tmp_path, f"ray.address={head.address}", "ray.learners=1", "ray.rollout_workers=1",
                       "ray.learner_resources={near: 1}", "ray.rollout_resources={far: 1}", "ray.sync_timeout_s=20",
                       "optim.lr=1e-3")
    cluster = Cluster(cfg, log=lambda _: None)
    try:
        learner, worker = cluster.learners[0], cluster.workers[0]
        assert ray.get(learner.node.remote()) == head.head_node.node_id
        assert ray.get(worker.node.remote()) == far.node_id
        # Each actor's BLAS threads come from its own node's cores (the far node declares 1), not the driver's.
        here = min(2, len(os.sched_getaffinity(0)))
        assert cluster.threads == {"learner rank 0": here, "rollout worker 0": 1}
        assert ray.get(learner.threads.remote()) == here and ray.get(worker.threads.remote()) == 1
        # The sync group's connections use the node's Ray IP, never the loopback the hostname resolves to.
        node_ip = ray.util.get_node_ip_address()
        pairs = connections_between(ray.get(learner.pid.remote()), ray.get(worker.pid.remote()))
        assert pairs and all(a == b == node_ip for a, b in pairs), (pairs, node_ip)
        trainer = Trainer(cfg, cluster, log=lambda _: None)
        trainer.eval_rows = []
        history = trainer.run(2, MetricsLog(tmp_path / "m", 3, tensorboard=False))
        assert [m["step"] for m in history] == [1, 2] and all("reward_mean" in m for m in history)
        learner_digest, workers = cluster.weights_digests()
        assert workers == [learner_digest]
        # The rollout worker's node goes away; no other node has the `far` resource it needs.
        head.remove_node(far)
        t0 = time.monotonic()
        with pytest.raises(ClusterFailure, match=r"ray.sync_timeout_s=20 s.*'far': 'need 1, have 0'"):
            trainer.run(3, MetricsLog(tmp_path / "m", 3, tensorboard=False))
        assert time.monotonic() - t0 < 20 + 40  # bounded by the timeout (plus Ray noticing the node is gone)
    finally:
        cluster.shutdown(keep_ray=True)
