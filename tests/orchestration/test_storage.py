"""The storage contract (engine/orchestration/storage.py): each actor checks, on its own node and before any step, the
paths every node must share, and a path it cannot use ends the run with one error naming it, never a restart."""
from pathlib import Path

import pytest
from ray.exceptions import ActorDiedError, RayTaskError
from ray_testlib import small_config

from engine.errors import StorageError
from engine.orchestration.cluster import Cluster
from engine.orchestration.storage import check_storage, model_paths, video_probe
from engine.orchestration.supervisor import infrastructure_failure


def test_every_path_a_node_cannot_use_is_named(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    (tmp_path / "a_file").write_bytes(b"x")
    check_storage("rollout worker 0", "10.0.0.2", read=[tmp_path / "videos" / "a.mp4"], write=[tmp_path / "out"])
    assert (tmp_path / "out").is_dir() and not list((tmp_path / "out").iterdir())  # the probe file is gone
    with pytest.raises(StorageError) as e:
        check_storage("learner rank 1", "10.0.0.3", read=[tmp_path / "videos" / "b.mp4", tmp_path / "model"],
                      write=[tmp_path / "a_file" / "run"])
    text = str(e.value)
    assert text.startswith("learner rank 1 on node 10.0.0.3: ")
    for named in (f"{tmp_path / 'videos' / 'b.mp4'} does not exist", f"{tmp_path / 'model'} does not exist",
                  f"{tmp_path / 'a_file' / 'run'} is not writable"):
        assert named in text
    assert "same paths" in text and "Running on a cluster" in text


def test_a_few_videos_are_probed_one_per_folder(tmp_path):
    paths = [tmp_path / d / f"{i}.mp4" for d in ("b", "a") for i in range(3)]
    assert video_probe(paths) == [tmp_path / "a" / "0.mp4", tmp_path / "b" / "0.mp4"]
    assert len(video_probe(tmp_path / f"d{i}" / "x.mp4" for i in range(200))) == 64
    assert model_paths("tiny") == [] and model_paths("tiny-reader") == [] and model_paths(None) == []
    assert model_paths("/models/qwen") == [Path("/models/qwen")]


def test_storage_errors_are_not_retried():
    cause = StorageError("rollout worker 0 on node 10.0.0.2: /data/v.mp4 does not exist")
    assert infrastructure_failure(RayTaskError("RolloutWorker.start", "Traceback ...", cause)) is None
    # raised in an actor's constructor (model.path unreadable there): Ray reports the actor dead
    born_dead = ActorDiedError(RayTaskError("RolloutWorker.__init__", "Traceback ...", cause))
    assert born_dead.actor_init_failed and infrastructure_failure(born_dead) is None
    assert infrastructure_failure(ActorDiedError()) is not None  # a process that died is still worth a restart


def test_a_video_a_rollout_worker_cannot_read_stops_the_start_with_its_name(tmp_path):
    cfg = small_config(tmp_path, "ray.learners=1", "ray.rollout_workers=1")
    cluster = Cluster.launch(cfg, log=lambda _: None)
    missing = tmp_path / "elsewhere" / "clip.mp4"
    try:
        with pytest.raises(RayTaskError) as e:
            cluster.start(None, [missing])
    finally:
        cluster.shutdown()
    assert isinstance(e.value.cause, StorageError) and infrastructure_failure(e.value) is None
    assert f"{missing} does not exist" in str(e.value.cause) and "rollout worker 0 on node" in str(e.value.cause)
