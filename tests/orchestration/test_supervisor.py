"""Restarts (engine/orchestration/supervisor.py): a learner rank killed with SIGKILL in the middle of a run is
restarted with every other actor, the run resumes from its newest checkpoint, and it ends with every step logged
once and the same metrics as a run without the fault; failures that would repeat are never retried."""
import json
import os
import signal
import threading

import pytest
import ray
import torch
from ray.exceptions import ActorDiedError, RayTaskError
from ray_testlib import small_config, stable

from engine.errors import ClusterFailure, ConfigError, VideoDecodeError, WeightSyncError
from engine.orchestration.cluster import Cluster
from engine.orchestration.interrupt import Interrupted
from engine.orchestration.supervisor import Restarts, checkpoint_interval, infrastructure_failure
from engine.recipes.grpo import train
from engine.telemetry.metrics import read_metrics


def task_error(cause: BaseException) -> RayTaskError:
    return RayTaskError("LearnerWorker.update", "Traceback ...", cause)


def test_failures_worth_a_restart_are_told_from_those_that_would_repeat():
    worth = [ActorDiedError(),
             task_error(RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer")),
             task_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")),
             task_error(WeightSyncError("weight sync timed out after 600 s")),
             task_error(RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error")),
             task_error(task_error(RuntimeError("Connection reset by peer")))]
    for error in worth:
        assert infrastructure_failure(error), error
    repeat = [ConfigError("reward.fn", "cannot import"), TypeError("reward() takes 2 arguments"),
              task_error(ConfigError("model.path", "no such folder")), task_error(VideoDecodeError("bad.mp4")),
              task_error(TypeError("unsupported operand")), task_error(KeyError("input_ids")),
              task_error(RuntimeError("shape mismatch: [4, 8] vs [4, 9]"))]
    for error in repeat:
        assert infrastructure_failure(error) is None, error


def test_the_restart_budget_counts_logs_and_ends_with_where_to_continue():
    logs = []
    budget = Restarts(1, logs.append, prefix="sft: ")
    died = budget.take(ActorDiedError(), None, None, None)
    assert died.startswith("an actor died: ActorDiedError") and budget.used == 1
    assert logs == [f"sft: {died}; starting every actor again (restart 1/1)"]
    with pytest.raises(ConfigError):  # would fail the same way again: not a restart, not counted
        budget.take(ConfigError("reward.fn", "cannot import"), None, None, None)
    with pytest.raises(ClusterFailure) as err:
        budget.take(ActorDiedError(), None, "runs/x/checkpoints/step-00000004", "vthink train runs/x/config.json --resume")
    assert str(err.value).startswith("sft: an actor died: ") and "(1 of trainer.max_restarts=1 used)" in str(err.value)
    assert str(err.value).endswith("The newest checkpoint is runs/x/checkpoints/step-00000004; continue with: "
                                   "vthink train runs/x/config.json --resume")
    with pytest.raises(ClusterFailure, match="No checkpoint was written."):
        Restarts(0, logs.append).take(ActorDiedError(), None, None, None)


def test_restarts_pick_a_checkpoint_interval_when_none_is_set():
    assert checkpoint_interval(100, 0, 3) == 10 and checkpoint_interval(5, 0, 3) == 1
    assert checkpoint_interval(100, 7, 3) == 7 and checkpoint_interval(100, 0, 0) == 0


def run_config(tmp_path, name: str, *extra: str):
    return small_config(tmp_path / name, "ray.learners=2", "ray.rollout_workers=1", "trainer.steps=4",
                        "trainer.checkpoint_every=2", "optim.lr=1e-3", f"data.dir={tmp_path / 'data'}", *extra)


def kill_learner_during_update(monkeypatch, call: int, rank: int = 1) -> list:
    """Cluster.update kills learner `rank` with SIGKILL while its `call`-th update computes (as the OOM killer or a
    preemption would); returns the list of update calls made."""
    calls, original = [], Cluster.update

    def update(self, samples):
        calls.append(len(samples))
        if len(calls) == call:
            pid = ray.get(self.learners[rank].pid.remote())
            threading.Timer(0.05, os.kill, (pid, signal.SIGKILL)).start()
        return original(self, samples)

    monkeypatch.setattr(Cluster, "update", update)
    return calls


def comparable(m: dict) -> dict:
    return {k: v for k, v in stable(m).items() if k not in ("weight_version", "restart", "restarts")}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """(the metrics of the run without a fault, its data folder, which the faulty runs share)."""
    root = tmp_path_factory.mktemp("clean")
    return train(run_config(root, "clean"), log=lambda _: None), f"data.dir={root / 'data'}"


def test_a_learner_killed_mid_run_is_restarted_and_every_step_runs_once(tmp_path, monkeypatch, clean):
    clean, data = clean
    calls = kill_learner_during_update(monkeypatch, call=3)
    logs = []
    train(run_config(tmp_path, "faulty", data), log=logs.append)
    assert len(calls) == 5  # steps 1-3, then 3 and 4 again from the step-2 checkpoint
    metrics = read_metrics(tmp_path / "faulty" / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]  # each step once, the redone one included
    line = metrics[2]["restart"]
    assert line.startswith("restart 1/3 after learner rank 1 died: ") and line.endswith("resumed from step 2")
    assert line in logs and metrics[2]["restarts"] == 1
    assert [comparable(m) for m in metrics] == [comparable(m) for m in clean]  # nothing lost, doubled or changed
    trace = tmp_path / "faulty" / "run" / "rollouts" / "step-3.jsonl"
    traced = [json.loads(x) for x in trace.read_text().splitlines()]
    assert traced and {t["step"] for t in traced} == {3}


def test_an_actor_lost_while_the_run_restarts_is_one_more_restart(tmp_path, monkeypatch, clean):
    """A fault while the actors start again (a node going down in a row, a chaos schedule) is retried like the
    first, not an end to the run."""
    kill_learner_during_update(monkeypatch, call=3)
    starts, original = [], Cluster.start

    def start(self, *args):
        starts.append(1)
        if len(starts) == 2:  # the first relaunch: its rollout worker dies before the cluster is up
            os.kill(ray.get(self.workers[0].pid.remote()), signal.SIGKILL)
        return original(self, *args)

    monkeypatch.setattr(Cluster, "start", start)
    clean, data = clean
    logs = []
    train(run_config(tmp_path, "twice", data), log=logs.append)
    assert len(starts) == 3
    died = [x for x in logs if " died: " in x and "starting every actor again" in x]
    assert died[0].startswith("learner rank 1 died: ") and died[0].endswith("(restart 1/3)"), logs
    assert died[1].startswith("rollout worker 0 died: ") and died[1].endswith("(restart 2/3)"), logs
    restarts = [x for x in logs if x.startswith("restart ")]
    assert len(restarts) == 1 and restarts[0].startswith("restart 2/3 after rollout worker 0 died: "), logs
    assert restarts[0].endswith("resumed from step 2")
    metrics = read_metrics(tmp_path / "twice" / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and metrics[2]["restarts"] == 2
    assert [comparable(m) for m in metrics] == [comparable(m) for m in clean]


def test_without_restarts_left_the_run_ends_with_a_typed_error_naming_who_and_the_checkpoint(tmp_path, monkeypatch):
    kill_learner_during_update(monkeypatch, call=3, rank=0)
    with pytest.raises(ClusterFailure) as err:
        train(run_config(tmp_path, "norestart", "trainer.max_restarts=0"), log=lambda _: None)
    text = str(err.value)
    assert "learner rank 0 died" in text and "trainer.max_restarts=0" in text
    assert "checkpoints/step-00000002" in text, text
    assert "--resume" in text


def test_ctrl_c_while_the_actors_restart_ends_the_run_at_its_newest_checkpoint(tmp_path, monkeypatch, clean):
    # SIGINT in the driver while it waits for the new actors (a blocking Ray call) raises KeyboardInterrupt there;
    # there is no cluster to checkpoint, so the run ends at the newest checkpoint and says how to continue.
    kill_learner_during_update(monkeypatch, call=3)
    starts, original = [], Cluster.start

    def start(self, *args):
        starts.append(1)
        if len(starts) == 2:  # the relaunch after the learner's death
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Cluster, "start", start)
    logs = []
    with pytest.raises(Interrupted) as e:
        train(run_config(tmp_path, "ctrl_c", clean[1]), log=logs.append)
    checkpoint = tmp_path / "ctrl_c" / "run" / "checkpoints" / "step-00000002"
    assert e.value.step == 2 and e.value.checkpoint == str(checkpoint)
    assert logs[-1] == (f"interrupted at step 2; checkpoint {checkpoint}; continue with: vthink train "
                        f"{tmp_path / 'ctrl_c' / 'run' / 'config.json'} --resume")
    assert [m["step"] for m in read_metrics(tmp_path / "ctrl_c" / "run" / "metrics.jsonl")] == [1, 2]
