"""A rollout submitted while a weight sync is under way (one-step-off's dynamic-sampling refill) waits for the
sync: queued between a worker's handshake and its receive, it would run first, and learner rank 0 would sit in the
broadcast for it until the sync group's timeout."""
import threading
import time

from ray_testlib import small_config

from engine.orchestration import cluster as cluster_module
from engine.orchestration.actors import RolloutWorker
from engine.recipes.grpo import Trainer

SYNC_TIMEOUT_S = 1.0
ROLLOUT_S = 4.0  # a rollout outlasts the sync group's timeout


def test_a_refill_submitted_after_the_handshake_runs_after_the_weights_arrive(tmp_path, monkeypatch):
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
        handshake, refill = cluster._wait_idle, {}

        def handshake_then_refill():
            # The race, made certain: the rollout thread submits right after every worker reported idle.
            handshake()
            refill["thread"] = threading.Thread(target=lambda: refill.setdefault("out", trainer.rollout(0)))
            refill["thread"].start()
            time.sleep(0.5)  # long enough for an unguarded submission to reach the worker's queue

        cluster._wait_idle = handshake_then_refill
        before = cluster.version
        cluster.sync_weights()  # raises if rank 0 timed out waiting for a busy worker
        cluster._wait_idle = handshake
        refill["thread"].join(timeout=120)
        batch, rewards, _ = refill["out"]
        assert cluster.version == before + 1
        assert len(batch.samples) == cfg.trainer.prompts_per_step * cfg.rollout.group_size
        learner, workers = cluster.weights_digests()
        assert workers == [learner]
    finally:
        cluster.shutdown()
