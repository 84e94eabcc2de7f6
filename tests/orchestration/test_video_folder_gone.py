"""The video folder disappears in the middle of a run (a network mount dropping): the prompts whose clips can no
longer be read fail, each named, the steps go on and count them, and once the folder is back prompts succeed again."""
from ray_testlib import small_config

from engine.orchestration.cluster import Cluster
from engine.recipes.grpo import Trainer
from engine.telemetry.metrics import MetricsLog


def test_prompts_fail_named_and_counted_while_the_videos_are_gone(tmp_path):
    cfg = small_config(tmp_path, "ray.learners=1", "ray.rollout_workers=1", "data.num_videos=12",
                       "trainer.prompts_per_step=3", "video.cache_bytes=0")
    logs = []
    cluster = Cluster(cfg, log=lambda _: None)
    try:
        trainer = Trainer(cfg, cluster, log=logs.append)
        trainer.eval_rows = []
        metrics = MetricsLog(tmp_path / "m", 4, tensorboard=False)
        assert trainer.run(1, metrics)[0]["failed_prompts"] == 0
        videos = tmp_path / "data" / "videos"
        videos.rename(tmp_path / "data" / "gone")
        gone = trainer.run(3, metrics)
        (tmp_path / "data" / "gone").rename(videos)
        back = trainer.run(4, metrics)
    finally:
        cluster.shutdown()
    assert [m["step"] for m in gone] == [2, 3] and [m["failed_prompts"] for m in gone] == [3, 3]
    assert len(trainer.failed) == 6 and all(str(videos) in f for f in trainer.failed), trainer.failed[:2]
    assert sum("prompt failed" in line for line in logs) == 6
    assert back[0]["failed_prompts"] == 0 and "reward_mean" in back[0]
