"""Asynchronous GRPO (trainer.max_staleness, engine/recipes/grpo.py): rollouts run ahead of the learners by at most
that many weight versions, each batch carries the version it was drawn with, a batch older than allowed is dropped
and rolled out again, and a checkpoint taken while later steps are already rolled out resumes the prompt stream
where the first untrained step drew."""
from dataclasses import replace

import pytest
from ray_testlib import small_config

from engine.orchestration.cluster import Cluster
from engine.recipes.grpo import Trainer
from engine.telemetry.metrics import MetricsLog

STALENESS = 2


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("async")
    return small_config(tmp, f"trainer.max_staleness={STALENESS}", "learner.old_logp=rollout", "optim.lr=1e-3",
                        "data.num_videos=12", "ray.rollout_workers=1", "ray.learners=1", "trainer.checkpoint_every=2")


@pytest.fixture(scope="module")
def cluster(cfg):
    c = Cluster(cfg, log=lambda _: None)
    yield c
    c.shutdown()


class Recording(Trainer):
    """A Trainer that notes the rows each step trained on."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.eval_rows = []
        self.rows: dict[int, list[str]] = {}

    def rollout(self, step):
        batch, rewards, m = super().rollout(step)
        self.rows[step + 1] = sorted({x.row_id for x in batch.samples})
        return batch, rewards, m


def test_rollouts_run_ahead_by_at_most_max_staleness_versions(cfg, cluster, tmp_path):
    trainer = Recording(cfg, cluster, log=lambda _: None)
    start = cluster.version
    history = trainer.run(5, MetricsLog(tmp_path, 5, tensorboard=False))
    per_step = cfg.trainer.prompts_per_step * cfg.rollout.group_size
    assert [m["step"] for m in history] == [1, 2, 3, 4, 5] and cluster.version == start + 5
    assert all(m["sequences"] == per_step for m in history)  # every batch whole
    stale = [m["staleness"] for m in history]
    # Step 1 is drawn on the starting weights; step 2 was queued with it, before any update: one version old.
    assert stale[:2] == [0, 1] and max(stale) <= STALENESS, stale
    assert all(m["stale_groups_dropped"] == 0 for m in history)
    assert all(m["time_learner_idle_s"] >= 0 and m["time_rollout_idle_s"] >= 0 for m in history)


def test_a_batch_older_than_allowed_is_dropped_and_rolled_out_again(cfg, cluster, tmp_path):
    class SyncsTwiceMore(Recording):  # as a worker recovery does: versions move on without a step
        def learn(self, batch, rewards):
            m = super().learn(batch, rewards)
            if self.step == 0:
                self.cluster.sync_weights()
                self.cluster.sync_weights()
            return m

    trainer = SyncsTwiceMore(cfg, cluster, log=lambda _: None)
    history = trainer.run(3, MetricsLog(tmp_path, 3, tensorboard=False))
    # Step 2's batch, queued before step 1 trained, is now 1 + 2 versions old: dropped, drawn again on fresh weights.
    assert history[1]["stale_groups_dropped"] == cfg.trainer.prompts_per_step
    assert all(m["staleness"] <= STALENESS for m in history)
    assert all(m["sequences"] == cfg.trainer.prompts_per_step * cfg.rollout.group_size for m in history)


def test_a_checkpoint_taken_while_later_steps_roll_out_resumes_their_prompts(cfg, cluster, tmp_path):
    run_cfg = replace(cfg, trainer=replace(cfg.trainer, output_dir=str(tmp_path / "run")))
    straight = Recording(run_cfg, cluster, log=lambda _: None)
    straight.run(4, MetricsLog(tmp_path / "a", 4, tensorboard=False))  # checkpoints after steps 2 and 4
    assert len({tuple(r) for r in straight.rows.values()}) == 4  # four different batches of prompts

    resumed = Recording(run_cfg, cluster, log=lambda _: None)
    first = min((tmp_path / "run" / "checkpoints").iterdir())  # named by the learners' own step count
    resumed.resume(str(first))
    assert resumed.step == 2
    resumed.run(4, MetricsLog(tmp_path / "b", 4, tensorboard=False))
    # When step 2's checkpoint was written, steps 3 and 4 had already drawn their prompts: the resumed run draws
    # those same prompts again, not the ones after them.
    assert resumed.rows == {3: straight.rows[3], 4: straight.rows[4]}
