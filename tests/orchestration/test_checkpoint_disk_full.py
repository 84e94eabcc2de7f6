"""The disk fills while a checkpoint is written (a 40 MB tmpfs: one tiny-model checkpoint takes 26 MB): the run stops
with one line saying what happened and how to continue, the half-written checkpoint is removed, and the previous one
stays complete and loadable."""
import json
import shutil
import subprocess

import pytest
from ray_testlib import small_config

from engine.learner.checkpoint import complete_steps, latest
from engine.learner.errors import CheckpointError
from engine.orchestration.cluster import Cluster
from engine.recipes.grpo import Trainer
from engine.telemetry.metrics import MetricsLog


@pytest.fixture()
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_stops_the_run_cleanly_and_keeps_the_last_checkpoint(tmp_path, small_disk):
    cfg = small_config(tmp_path, f"trainer.output_dir={small_disk / 'run'}", "trainer.checkpoint_every=1",
                       "trainer.trace_every=0", "ray.learners=1", "ray.rollout_workers=1")
    cluster = Cluster(cfg, log=lambda _: None)
    try:
        trainer = Trainer(cfg, cluster, log=lambda _: None)
        trainer.eval_rows = []
        with pytest.raises(CheckpointError) as err:
            trainer.run(3, MetricsLog(small_disk / "run", 3, tensorboard=False))
    finally:
        cluster.shutdown()
    text = str(err.value)
    root = small_disk / "run" / "checkpoints"
    assert "could not write the checkpoint of step 2" in text
    assert float(text.split(" MiB were free there")[0].rsplit("(", 1)[1]) < 1.0  # it says the disk was full
    assert f"{root / 'step-00000001'}, is intact" in text and "--resume" in text and "Traceback" not in text
    assert complete_steps(root) == [root / "step-00000001"] == [latest(root)]
    assert [p.name for p in root.iterdir()] == ["step-00000001"]  # the partial one is gone, its space free again
    assert json.loads((root / "step-00000001" / "trainer_state.json").read_text())["extra"]["step"] == 1
    assert shutil.disk_usage(small_disk).free > 10 << 20
