"""ray.colocate: rollout worker 0 shares learner rank 0's bundle and takes its weights from rank 0's shared buffer
(engine/sync/ipc.py; CUDA IPC on a GPU, where NCCL refuses two ranks on one device), while worker 1 stays in the
sync group. Real Ray actors and gloo on CPU; the GPU check pack runs the handoff with CUDA IPC."""
from ray_testlib import small_config

from engine.orchestration.cluster import Cluster
from engine.recipes.grpo import Trainer
from engine.telemetry.metrics import MetricsLog


def test_colocated_worker_gets_the_weights_through_the_shared_buffer(tmp_path):
    cfg = small_config(tmp_path, "optim.lr=1e-3", "ray.rollout_workers=2", "ray.learners=2", "ray.colocate=true")
    cluster = Cluster(cfg, log=lambda _: None)
    try:
        assert cluster.colocated and cluster._remote_workers() == cluster.workers[1:]
        learner, workers = cluster.weights_digests()
        assert workers == [learner, learner]  # the first sync reached both, by the two paths
        trainer = Trainer(cfg, cluster, log=lambda _: None)
        trainer.eval_rows = []
        history = trainer.run(2, MetricsLog(tmp_path / "m", 2, tensorboard=False))
        after, workers = cluster.weights_digests()
        assert after != learner and workers == [after, after]
        assert all(m["logp_gap_max"] <= 1e-3 for m in history)
    finally:
        cluster.shutdown()
