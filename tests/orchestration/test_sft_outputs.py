"""`vthink sft` on the FSDP learners (real Ray actors) over the user's rows: their reasoning traces are the targets,
the saved folder is a complete model folder in model.dtype (processor files included), and a resumed run ends
exactly where an uninterrupted one does."""
import json

import pytest
import torch

from engine.config import ConfigError, load_config
from engine.data.synthetic import make_dataset
from engine.learner.checkpoint import PROCESSOR_FILES
from engine.model import model_dir
from engine.cli import main
from engine.data.sources import load_data, prepare
from engine.recipes.sft import run_sft
from engine.rollout.teacher import target_response


@pytest.fixture(scope="module")
def r1_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("r1sft")
    made = make_dataset(root / "render", num_videos=2, seed=2, width=128, height=64, duration_s=2.0)
    clips = sorted((made.dir / "videos").iterdir())
    rows = [{"problem_id": i, "problem": "Which colour appears?", "data_type": "video",
             "problem_type": "multiple choice", "options": ["A. red", "B. blue"],
             "process": "<think>the shape is blue</think>", "solution": "<answer>B</answer>", "path": str(clips[i % 2])}
            for i in range(4)]
    rows.append({**rows[0], "problem_id": 9, "process": None})  # no trace: left out of SFT, not an error
    (root / "train.json").write_text(json.dumps(rows))
    return root / "train.json"


def test_sft_trains_on_the_rows_traces_and_saves_a_complete_folder(r1_file, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    cfg = load_config(None, [f"data.train_files=[{r1_file}]", "sft.steps=2", "sft.batch_size=2",
                             "model.dtype=bfloat16", f"trainer.output_dir={tmp_path}"])
    logs = []
    out = run_sft(cfg, prepare(cfg, "train", tmp_path), tmp_path / "sft", logs.append)
    assert any("4 of 5 training rows have a reasoning trace" in line for line in logs)
    source = model_dir(None)
    for name in PROCESSOR_FILES:
        assert (out / name).is_file() == (source / name).is_file()
    assert (out / "preprocessor_config.json").is_file() and (out / "video_preprocessor_config.json").is_file()
    model = AutoModelForImageTextToText.from_pretrained(out)
    assert model.dtype == torch.bfloat16
    assert AutoImageProcessor.from_pretrained(out).merge_size == 2
    assert len(AutoTokenizer.from_pretrained(out)) == model.config.text_config.vocab_size
    # The video processor samples and sizes clips as training did. Its class needs torchvision, which has no working
    # CPU build here, so the keys are checked against the ones its source declares instead of by loading it.
    video = json.loads((out / "video_preprocessor_config.json").read_text())
    v = cfg.video
    assert (video["fps"], video["min_frames"], video["max_frames"], video["max_pixels"]) == (
        v.fps, v.min_frames, v.max_frames, v.max_pixels)
    assert video["do_sample_frames"] is True and video["size"]["longest_edge"] == v.max_pixels
    assert {"fps", "min_frames", "max_frames", "max_pixels", "min_pixels", "do_sample_frames", "size"} <= (
        _declared_video_kwargs())


def _declared_video_kwargs() -> set[str]:
    """The keyword arguments transformers' Qwen2VLVideoProcessor declares (its InitKwargs and VideosKwargs)."""
    import ast
    from pathlib import Path

    import transformers

    root = Path(transformers.__file__).parent
    names = set()
    for file, cls in ((root / "models/qwen2_vl/video_processing_qwen2_vl.py", "Qwen2VLVideoProcessorInitKwargs"),
                      (root / "processing_utils.py", "VideosKwargs")):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ClassDef) and node.name == cls:
                names |= {a.target.id for a in node.body if isinstance(a, ast.AnnAssign)}
    return names


def test_sft_target_is_the_trace_then_the_answer(r1_file):
    cfg = load_config(None, [f"data.train_files=[{r1_file}]"])
    row = load_data(cfg.data).train[0]
    assert target_response(row) == "<think>the shape is blue</think>\n<answer>B</answer>"


def test_sft_without_any_trace_is_a_config_error(r1_file, tmp_path):
    rows = json.loads(r1_file.read_text())
    for r in rows:
        r["process"] = None
    f = tmp_path / "notrace.json"
    f.write_text(json.dumps(rows))
    cfg = load_config(None, [f"data.train_files=[{f}]", "sft.steps=1", f"trainer.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="sft.steps"):
        run_sft(cfg, prepare(cfg, "train", tmp_path), tmp_path / "sft", lambda _: None)


def test_sft_resumes_where_it_stopped(r1_file, tmp_path):
    from safetensors.torch import load_file

    common = [f"data.train_files=[{r1_file}]", "sft.batch_size=2", "sft.lr=1e-3", "ray.learners=2"]
    assert main(["sft", *common, "sft.steps=3", f"trainer.output_dir={tmp_path / 'straight'}"]) == 0
    part = [*common, "trainer.checkpoint_every=1", f"trainer.output_dir={tmp_path / 'resumed'}"]
    assert main(["sft", *part, "sft.steps=2"]) == 0
    assert main(["sft", *part, "sft.steps=3", "--resume"]) == 0
    straight = load_file(tmp_path / "straight" / "sft" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "sft" / "model.safetensors")
    base = load_file(model_dir(None) / "model.safetensors")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert any(not torch.equal(straight[k], base[k]) for k in straight)  # it did train
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_sft_epochs_and_periodic_held_out_eval(r1_file, tmp_path):
    """sft.epochs sets the step count; sft.eval_every syncs the learners' weights to a rollout worker and scores
    the held-out rows greedily, into the step's metrics line."""
    cfg = load_config(None, [f"data.train_files=[{r1_file}]", f"data.val_files=[{r1_file}]", "sft.epochs=1",
                             "sft.batch_size=2", "sft.eval_every=1", "rollout.max_new_tokens=4",
                             "ray.rollout_workers=1", "ray.learners=1", f"trainer.output_dir={tmp_path}"])
    run_sft(cfg, prepare(cfg, "train", tmp_path), tmp_path / "sft", lambda _: None)
    lines = [json.loads(x) for x in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]  # 4 rows with a trace, 2 per step, one epoch
    assert all(m["eval_questions"] == 5 and 0 <= m["eval_accuracy"] <= 1 for m in lines)  # every held-out row


def test_sft_targets_follow_the_format_layout():
    from pathlib import Path

    from engine.data.schema import QARow, Segment, VideoRecord
    from engine.reward import format_reward

    def qa(reasoning):
        return QARow(id="q", video_id="v", video=Path("/v.mp4"), kind="mcq", question="q?", options=["a", "b"],
                     answer="B", answer_span_s=None, split="train", reasoning=reasoning)

    record = VideoRecord("v", Path("/v.mp4"), "h264", 8.0, 16, 128, 64, 2.0, segments=[Segment(0.0, 1.0, "a red dot")])
    assert target_response(qa("it is blue"), layout="r1") == "<think>it is blue</think>\n<answer>B</answer>"
    assert format_reward(target_response(qa("it is blue"), layout="r1"), "r1") == 1.0
    assert format_reward(target_response(qa(None), record, "r1"), "r1") == 1.0
    assert format_reward(target_response(qa(None), record), "video_thinker") == 1.0


def test_sft_restarts_after_a_learner_dies_and_ends_as_a_straight_run(r1_file, tmp_path, monkeypatch):
    """A learner rank SIGKILLed during SFT's third step (the OOM killer, a preemption): every actor starts again,
    SFT resumes from its step-2 checkpoint, logs each step once and saves the same weights as a run without it."""
    import os
    import signal
    import threading

    import ray
    from safetensors.torch import load_file

    from engine.orchestration.cluster import Cluster

    def run(name, log=lambda _: None):
        cfg = load_config(None, [f"data.train_files=[{r1_file}]", "sft.batch_size=2", "sft.lr=1e-3", "sft.steps=4",
                                 "ray.learners=2", "trainer.checkpoint_every=2", f"trainer.output_dir={tmp_path / name}"])
        return run_sft(cfg, prepare(cfg, "train", tmp_path / name), tmp_path / name / "sft", log)

    straight = load_file(run("straight") / "model.safetensors")
    calls, original = [], Cluster.sft_update

    def sft_update(self, samples):
        calls.append(1)
        if len(calls) == 3:
            pid = ray.get(self.learners[1].pid.remote())
            threading.Timer(0.05, os.kill, (pid, signal.SIGKILL)).start()
        return original(self, samples)

    monkeypatch.setattr(Cluster, "sft_update", sft_update)
    logs = []
    restarted = load_file(run("faulty", logs.append) / "model.safetensors")
    assert len(calls) == 5  # steps 1-3, then 3 and 4 again from the step-2 checkpoint
    metrics = [json.loads(x) for x in (tmp_path / "faulty" / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    line = metrics[2]["restart"]
    assert line.startswith("sft restart 1/3 after learner rank 1 died: ") and line.endswith("resumed from step 2")
    assert line in logs and metrics[2]["restarts"] == 1
    assert any(x.startswith("sft: learner rank 1 died: ") and x.endswith("(restart 1/3)") for x in logs), logs
    assert straight.keys() == restarted.keys()
    assert all(torch.equal(straight[k], restarted[k]) for k in straight)
