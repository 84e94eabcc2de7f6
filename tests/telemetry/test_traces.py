"""Rollout traces of real agent trajectories (the agent loop with the real tools, its turns scripted by the
TeacherBackend SFT replays with): lines, turns, tool calls, frames on disk and shared within a group."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import load_config
from engine.orchestration.session import build_rollout, build_session
from engine.reward import score_sample
from engine.rollout.agent import AgentLoop, Episode
from engine.rollout.backend import SamplingParams
from engine.rollout.seeds import SeedTable
from engine.telemetry.traces import TraceWriter, choose, read_traces
from engine.video.preprocess import denormalize, normalize, patchify, unpatchify
from engine.rollout.teacher import TeacherBackend

CALL = '<tool_call>\n{"name": "frame_zoom", "arguments": {"start": "00:01.0", "end": "00:03.0", "num_frames": 4}}\n</tool_call>'
ANSWER = "<time>00:01-00:03</time> <caption>a shape</caption> <think>it is there</think> <answer>A</answer>"


def agent_setup(tmp):
    """(config, session, rollout engine) of the tiny model in agent mode on 4 small rendered clips under tmp."""
    cfg = load_config(None, [
        f"data.dir={tmp / 'data'}", "data.num_videos=4", "data.duration_s=6", "video.fps=1", "video.min_frames=2",
        "video.max_frames=4", "video.max_pixels=12544", "rollout.mode=agent", "rollout.group_size=2",
        "rollout.max_turns=2", f"trainer.output_dir={tmp / 'run'}"])
    s = build_session(cfg, log=lambda _: None)
    rollout = build_rollout(cfg, None, s.tokenizer, s.model.config, s.records)
    return cfg, s, rollout


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    return agent_setup(tmp_path_factory.mktemp("traces"))


def scripted_group(cfg, s, rollout, row, second_text: str = "<answer>B</answer>"):
    """Two samples of one prompt: the first calls frame_zoom then answers, the second answers at once."""
    seeds = SeedTable(0, 1, 2, rollout.loop_cfg.max_turns)
    script = {seeds(0, 0, 0): CALL, seeds(0, 0, 1): ANSWER, seeds(0, 1, 0): second_text}
    prompt = rollout.prepare(row)
    episodes = [Episode(0, k, 0, row.id, prompt.prompt_ids, prompt.videos, prompt.ctx) for k in range(2)]
    end = s.tokenizer.convert_tokens_to_ids("<|im_end|>")
    loop = AgentLoop(TeacherBackend(s.tokenizer, end, script), s.tokenizer, rollout.loop_cfg,
                     spec=rollout.spec, registry=rollout.registry)
    samples, _ = loop.run(episodes, SamplingParams(max_new_tokens=200), seeds)
    return samples


def test_unpatchify_inverts_patchify_exactly():
    frames = torch.randint(0, 256, (4, 56, 84, 3), dtype=torch.uint8)
    pixels, grid = patchify(normalize(frames))
    assert torch.equal(denormalize(unpatchify(pixels, grid)), frames)


def test_choose_takes_best_and_worst_of_each_group_first():
    rewards = [0.1, 0.9, 0.5, 0.0, 1.0, 0.2]
    groups = [0, 0, 0, 1, 1, 1]
    assert choose(rewards, groups, 4) == [0, 1, 3, 4]
    assert choose(rewards, groups, 2) == [0, 1]
    assert choose(rewards, groups, 10) == [0, 1, 2, 3, 4, 5]


def test_agent_trace_lines_hold_turns_tool_calls_and_frames(agent):
    cfg, s, rollout = agent
    row = next(r for r in s.train_rows if r.kind == "mcq")
    samples = scripted_group(cfg, s, rollout, row)
    assert samples[0].turns == 2 and samples[0].tool_trace[0].ok, samples[0].tool_trace
    rewards = [score_sample(x, row, cfg.reward, agent=True) for x in samples]
    writer = TraceWriter(cfg.trainer.output_dir)
    lines = writer.lines(3, "train", samples, rewards, {row.id: row})
    path = writer.write("step-3", lines)
    assert path.name == "step-3.jsonl"
    first, second = [json.loads(x) for x in path.read_text().splitlines()]
    assert set(first) >= {"step", "row_id", "sample", "question", "answer", "reward", "advantage", "logp_gap_max",
                          "turns"}
    assert (first["step"], first["row_id"], first["sample"], second["sample"]) == (3, row.id, 0, 1)
    assert first["reward"]["total"] == rewards[0].total and {"accuracy", "format"} <= set(first["reward"])
    roles = [t["role"] for t in first["turns"]]
    assert roles == ["assistant", "tool", "assistant"]
    call = first["turns"][0]["tool_call"]
    assert call["name"] == "frame_zoom" and call["arguments"]["start"] == "00:01.0" and call["ok"]
    assert first["turns"][2]["text"] == ANSWER and first["turns"][2]["tool_call"] is None
    # Observation frames: inside the requested span, on disk, decodable, the pixels the model was shown.
    seen = first["turns"][1]["frames"]
    assert len(seen) >= 1 and all(1.0 <= f["t"] <= 3.0 for f in seen)
    for f in seen + first["frames"]:
        img = Image.open(writer.dir / f["image"])
        assert img.format == "JPEG" and max(img.size) <= 128
    shown = denormalize(unpatchify(samples[0].videos[1].pixel_values, samples[0].videos[1].grid_thw))[0]
    thumb = np.asarray(Image.open(writer.dir / seen[0]["image"]).convert("RGB").resize(shown.shape[1::-1]))
    assert np.abs(thumb.astype(int) - shown.numpy().astype(int)).mean() < 20  # a JPEG of the same picture
    # The group's prompt frames are one set of files, shared by both samples.
    assert first["frames"] == second["frames"] and len(first["frames"]) >= 2
    assert [t["role"] for t in second["turns"]] == ["assistant"]
    assert len(list((writer.dir / "frames").iterdir())) == len(first["frames"]) + len(seen)
    assert read_traces(cfg.trainer.output_dir)[0]["row_id"] == row.id


def test_traced_samples_reach_tensorboard_as_text_and_frame_strips(agent, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from engine.telemetry.metrics import MetricsLog

    cfg, s, rollout = agent
    row = next(r for r in s.train_rows if r.kind == "mcq")
    samples = scripted_group(cfg, s, rollout, row)
    rewards = [score_sample(x, row, cfg.reward, agent=True) for x in samples]
    writer = TraceWriter(tmp_path / "run")
    lines = writer.lines(0, "train", samples, rewards, {row.id: row})
    log = MetricsLog(tmp_path / "run", 1)
    log.traces(0, lines, writer.dir)
    log.close()
    acc = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert {"rollouts/0/text_summary", "rollouts/1/text_summary"} <= set(acc.Tags()["tensors"])
    text = acc.Tensors("rollouts/0/text_summary")[0].tensor_proto.string_val[0].decode()
    assert row.id in text and "frame_zoom" in text
    image = acc.Images("rollouts/0/frames")[0]
    assert image.width == sum(Image.open(writer.dir / f["image"]).size[0] for f in lines[0]["frames"])


def test_non_finite_numbers_are_written_as_null(agent, tmp_path):
    cfg, s, rollout = agent
    row = next(r for r in s.train_rows if r.kind == "mcq")
    samples = scripted_group(cfg, s, rollout, row)
    samples[0].metrics["logp_gap_max"] = float("nan")
    samples[1].advantage = float("inf")
    rewards = [score_sample(x, row, cfg.reward, agent=True) for x in samples]
    writer = TraceWriter(tmp_path / "run")
    path = writer.write("step-0", writer.lines(0, "train", samples, rewards, {row.id: row}))
    first, second = [json.loads(x) for x in path.read_text().splitlines()]  # strict JSON: no NaN tokens
    assert first["logp_gap_max"] is None and second["advantage"] is None and "NaN" not in path.read_text()
