"""One-step-off training with a rollout slower than the sync group's timeout runs to the end: weights are sent only
once every worker is idle (the handshake), never into a collective against a busy peer."""
import time

from ray_testlib import small_config

from engine.orchestration import cluster as cluster_module
from engine.orchestration.actors import RolloutWorker
from engine.recipes.grpo import Trainer
from engine.telemetry.metrics import MetricsLog

SYNC_TIMEOUT_S = 1.0
ROLLOUT_S = 4.0  # each rollout takes this much longer than the sync group waits


def test_one_step_off_runs_to_the_end_with_a_worker_slower_than_the_sync_timeout(tmp_path, monkeypatch):
    class SlowWorker(RolloutWorker):  # defined here, so Ray ships it to the actor by value
        def generate(self, *args):
            time.sleep(ROLLOUT_S)
            return super().generate(*args)

    monkeypatch.setattr(cluster_module, "RolloutWorker", SlowWorker)
    cfg = small_config(tmp_path, "trainer.one_step_off=true", "learner.old_logp=rollout", "ray.rollout_workers=1",
                       "ray.learners=1", f"ray.sync_timeout_s={SYNC_TIMEOUT_S}")
    cluster = cluster_module.Cluster(cfg, log=lambda _: None)
    try:
        trainer = Trainer(cfg, cluster, log=lambda _: None)
        trainer.eval_rows = []  # no held-out eval: its rollout is slow too, and not what this test is about
        version = cluster.version
        history = trainer.run(3, MetricsLog(tmp_path / "m", 3, tensorboard=False))
        assert [m["step"] for m in history] == [1, 2, 3]
        assert cluster.version == version + 3  # a sync after every step, each while the next rollout ran
        learner, workers = cluster.weights_digests()
        assert workers == [learner]
    finally:
        cluster.shutdown()
