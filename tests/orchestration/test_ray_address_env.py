"""`ray job submit` sets RAY_ADDRESS: with ray.address unset, vthink joins that cluster instead of failing to start a
local one with resources of its own."""
import ray

from engine.config import load_config
from engine.orchestration.ray_start import cluster_address, stop_ray, wait_for_ray


def test_joins_the_cluster_named_by_RAY_ADDRESS(monkeypatch):
    from ray.cluster_utils import Cluster

    stop_ray()
    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
    try:
        monkeypatch.setenv("RAY_ADDRESS", head.address)
        cfg = load_config(None, [])
        assert cfg.ray.address is None and cluster_address(cfg) == head.address
        wait_for_ray(cfg)  # before: ValueError, num_cpus must not be given when connecting to an existing cluster
        assert ray.cluster_resources()["CPU"] == 3  # the head's, not a fresh local cluster's
    finally:
        stop_ray()
        head.shutdown()


def test_ray_address_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cluster_address(load_config(None, ["ray.address=auto"])) == "auto"
    monkeypatch.delenv("RAY_ADDRESS")
    assert cluster_address(load_config(None, [])) is None
