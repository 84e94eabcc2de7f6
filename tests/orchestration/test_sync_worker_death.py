"""A rollout worker that dies in the middle of a weight broadcast: the sender is released at once (its side of the
group aborted on NCCL; gloo sees the closed peer), Ray restarts the worker, the sync group is rebuilt and the
weights are sent again; training goes on and every worker ends with the learner's weights."""
import os
from pathlib import Path

from ray_testlib import small_config

from engine.orchestration import cluster as cluster_module
from engine.orchestration.actors import RolloutWorker
from engine.recipes.grpo import Trainer
from engine.telemetry.metrics import MetricsLog


def test_a_worker_dying_mid_broadcast_is_restarted_and_resynced(tmp_path, monkeypatch):
    marker = str(tmp_path / "died")

    class DiesOnce(RolloutWorker):  # dies inside its second sync's receive (the first is the cluster's start)
        def receive_weights(self):
            if self.receiver.version is not None and not os.path.exists(marker):
                Path(marker).touch()
                os._exit(1)
            return super().receive_weights()

    monkeypatch.setattr(cluster_module, "RolloutWorker", DiesOnce)
    cfg = small_config(tmp_path, "optim.lr=1e-3", "ray.rollout_workers=2", "ray.learners=1", "ray.sync_timeout_s=10")
    logs = []
    cluster = cluster_module.Cluster(cfg, log=logs.append)
    try:
        trainer = Trainer(cfg, cluster, log=lambda _: None)
        trainer.eval_rows = []
        history = trainer.run(2, MetricsLog(tmp_path / "m", 2, tensorboard=False))
        assert [m["step"] for m in history] == [1, 2]
        assert os.path.exists(marker) and cluster.restarts >= 1
        assert any("during a weight sync" in line for line in logs), logs
        learner, workers = cluster.weights_digests()
        assert workers == [learner, learner]
    finally:
        cluster.shutdown()
