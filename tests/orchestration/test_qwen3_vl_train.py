"""model.arch=qwen3_vl end to end on a real local Ray cluster: GRPO trains with rollout and learner log-probs in
agreement, resumes exactly, and its checkpoints reload with plain transformers and as a new run's policy."""
import json
from pathlib import Path

import pytest
import torch
from ray_testlib import small_config, stable

from engine.orchestration.cluster import Cluster
from engine.recipes.grpo import Trainer
from engine.telemetry.metrics import MetricsLog


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    # 4 frames: two temporal patches, so the prompt holds two timestamped blocks per video
    return small_config(tmp_path_factory.mktemp("qwen3"), "model.arch=qwen3_vl", "video.max_frames=4",
                        "rollout.max_new_tokens=12", "rollout.temperature=1.0", "trainer.checkpoint_every=2",
                        "optim.lr=1e-3", "ray.rollout_workers=1", "ray.learners=1")


@pytest.fixture(scope="module")
def cluster(cfg):
    c = Cluster(cfg, log=lambda _: None)
    yield c
    c.shutdown()


def test_trains_resumes_and_reloads(cfg, cluster, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText

    trainer = Trainer(cfg, cluster, log=lambda _: None)
    assert trainer.tracer.spec.arch == "qwen3_vl" and trainer.tracer.spec.patch_size == 16
    before, _ = cluster.weights_digests()
    history = trainer.run(3, MetricsLog(tmp_path / "a", 3, tensorboard=False))
    after, workers = cluster.weights_digests()
    assert after != before and workers == [after]  # trained, and the rollout holds exactly those weights
    for m in history:
        assert m["tokens"] > 0 and 0 <= m["logp_gap_mean"] <= m["logp_gap_max"] <= 1e-3, m

    # Resuming from the step-2 checkpoint replays step 3 exactly.
    step2 = trainer.out / "checkpoints" / "step-00000002"
    resumed = Trainer(cfg, cluster, log=lambda _: None)
    resumed.resume(str(step2))
    replay = resumed.run(3, MetricsLog(tmp_path / "b", 3, tensorboard=False))
    a, b = stable(history[2]), stable(replay[0])
    b["weight_version"] = a["weight_version"]
    assert a == b

    # The checkpoint is a Qwen3-VL folder plain transformers loads, with Qwen3-VL's processor settings.
    model = AutoModelForImageTextToText.from_pretrained(step2, local_files_only=True)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    saved = load_file(step2 / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items() if k in saved)
    assert AutoConfig.from_pretrained(step2).model_type == "qwen3_vl"
    image = AutoImageProcessor.from_pretrained(step2)
    assert (image.patch_size, list(image.image_mean)) == (16, [0.5, 0.5, 0.5])
    video = json.loads((step2 / "video_preprocessor_config.json").read_text())
    assert video["video_processor_type"] == "Qwen3VLVideoProcessor" and video["patch_size"] == 16


def test_a_checkpoint_is_a_new_runs_policy(cfg):
    """model.path pointing at a Qwen3-VL checkpoint: detected from its config (model.arch does not apply)."""
    from dataclasses import replace

    from engine.orchestration.session import build_session
    from engine.rollout.backend import SamplingParams

    step2 = Path(cfg.trainer.output_dir) / "checkpoints" / "step-00000002"
    if not step2.is_dir():
        pytest.skip("needs the checkpoint of test_trains_resumes_and_reloads")
    again = replace(cfg, model=replace(cfg.model, path=str(step2), arch="qwen2_5_vl"))
    s = build_session(again, log=lambda _: None)
    assert s.rollout.spec.arch == "qwen3_vl" and s.rollout.backend.mrope["rule"] == "qwen3_vl"
    batch, stats = s.rollout.run(s.train_rows[:1], 2, SamplingParams(max_new_tokens=6, temperature=1.0, seed=3))
    assert len(batch.samples) == 2 and stats.failed_prompts == 0
    assert "seconds><|vision_start|>" in s.tokenizer.decode(batch.samples[0].prompt_ids)
