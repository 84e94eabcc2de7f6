"""`vthink demo` end to end at toy size through the CLI: every stage runs and demo.json has the published shape."""
import json

from engine.cli import main

EVAL_KEYS = {"questions", "accuracy", "chance", "format", "tool_calls_per_sample", "frames_per_question",
             "retrieval_calls_per_question", "zoom_hit_rate", "per_kind"}


# The untrained tiny model scores every sample alike: dynamic sampling (on in the agent demo) would leave no group
# to train or trace in these one-step runs.
def test_demo_writes_demo_json_with_every_stage_and_ablation(tmp_path):
    out = tmp_path / "run"
    # model.path=tiny: the reading warm-up (5 minutes, tests/recipes/test_reader.py) is left out at this size
    rc = main(["demo", "configs/tiny_agent_cpu.yaml", f"trainer.output_dir={out}", "model.path=tiny",
               "data.num_videos=16", "data.eval_fraction=0.5", "data.min_duration_s=20", "data.duration_s=30", "sft.steps=3",
               "algo.dynamic_sampling=false", "sft.batch_size=2", "trainer.steps=1", "trainer.prompts_per_step=2", "rollout.group_size=2",
               "rollout.max_new_tokens=24"])
    assert rc == 0
    demo = json.loads((out / "demo.json").read_text())
    assert demo["mode"] == "agent" and demo["chance"] == 0.25 and demo["wall_s"] > 0
    assert demo["num_eval_questions"] == 6  # one question per held-out clip; one clip in four asks "when"
    assert demo["data"] == {"train_clips": 8, "eval_clips": 8, "eval_clips_identical_to_train": 0}
    assert demo["commit"] and demo["config"]["data"]["task"] == "glimpse" and demo["data_seed"] == 0
    assert set(demo["stages"]) == {"base", "sft", "grpo"} and set(demo["ablations"]) == {"blank_video", "no_tools"}
    assert set(demo["controls"]) == {"dense_look", "shuffled_retrieval"}  # the trained ones need --controls
    for e in [*demo["stages"].values(), *demo["ablations"].values(), *demo["controls"].values()]:
        assert set(e) >= EVAL_KEYS and e["questions"] == 6 and 0 <= e["accuracy"] <= 1
        assert e["per_kind"]["mcq"]["n"] == 6 and e["per_kind"]["grounding"]["n"] == 2
        assert e["frames_per_question"] >= 8  # the 8 global frames at least
    assert demo["synth"]["questions"] == 2 and demo["synth"]["training_questions"] == 8  # a quarter
    for name in ("eval-base.json", "eval-grpo.json", "demo.png", "synth/trajectories.jsonl", "sft/config.json"):
        assert (out / name).is_file(), name
    assert (out / "data" / "videos.jsonl").is_file()
    # The GRPO stage left traces of its step and of its final eval, with the prompts' frames on disk.
    traces = [json.loads(x) for x in (out / "grpo" / "rollouts" / "step-1.jsonl").read_text().splitlines()]
    assert traces and all(t["frames"] and t["turns"] for t in traces)
    assert all((out / "grpo" / "rollouts" / f["image"]).is_file() for t in traces for f in t["frames"])
    assert (out / "grpo" / "rollouts" / "eval-1.jsonl").is_file()
    # A second run starts from fresh data in the same place; a foreign folder there is refused.
    (out / "data" / "mine.txt").write_text("keep me")
    assert main(["demo", "configs/tiny_agent_cpu.yaml", f"trainer.output_dir={out}"]) == 2
    assert (out / "data" / "mine.txt").read_text() == "keep me"


def test_demo_controls_are_trained_the_same_way(tmp_path):
    """--controls: sft_long (SFT twice as long), trained_blank and trained_no_tools (synthesis, SFT and GRPO with
    one thing changed), each a full eval dict, each run in its own folder with its own policy."""
    out = tmp_path / "run"
    rc = main(["demo", "configs/tiny_agent_cpu.yaml", "--controls", f"trainer.output_dir={out}", "model.path=tiny",
               "data.num_videos=16",
               "data.eval_fraction=0.5", "data.min_duration_s=20", "data.duration_s=30", "sft.steps=2",
               "algo.dynamic_sampling=false", "sft.batch_size=2", "trainer.steps=1", "trainer.prompts_per_step=2", "rollout.group_size=2",
               "rollout.max_new_tokens=16"])
    assert rc == 0
    demo = json.loads((out / "demo.json").read_text())
    assert set(demo["controls"]) == {"dense_look", "shuffled_retrieval", "sft_long", "trained_blank", "trained_no_tools"}
    for e in demo["controls"].values():
        assert set(e) >= EVAL_KEYS and e["questions"] == 6
    sft_long = [json.loads(x) for x in (out / "controls" / "sft_long" / "metrics.jsonl").read_text().splitlines()]
    assert len(sft_long) == 4  # twice sft.steps
    blank = json.loads((out / "controls" / "trained_blank" / "grpo" / "config.json").read_text())
    assert blank["video"]["blank"] is True
    no_tools = json.loads((out / "controls" / "trained_no_tools" / "grpo" / "config.json").read_text())
    assert no_tools["rollout"]["mode"] == "thinker" and no_tools["video"]["max_frames"] == 8
    assert demo["controls"]["trained_no_tools"]["tool_calls_per_sample"] == 0
