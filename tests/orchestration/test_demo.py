"""`vthink demo` end to end at toy size through the CLI: every stage runs and demo.json has the published shape."""
import json

from engine.cli import main

EVAL_KEYS = {"questions", "accuracy", "chance", "format", "tool_calls_per_sample", "per_kind"}


def test_demo_writes_demo_json_with_every_stage_and_ablation(tmp_path):
    out = tmp_path / "run"
    rc = main(["demo", "configs/tiny_agent_cpu.yaml", f"trainer.output_dir={out}", "data.num_videos=12",
               "data.eval_fraction=0.34", "sft.steps=3", "sft.batch_size=2", "trainer.steps=1",
               "trainer.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=24"])
    assert rc == 0
    demo = json.loads((out / "demo.json").read_text())
    assert demo["mode"] == "agent" and demo["chance"] == 0.25 and demo["wall_s"] > 0
    assert demo["num_eval_questions"] == 4  # one question per held-out clip
    assert set(demo["stages"]) == {"base", "sft", "grpo"} and set(demo["ablations"]) == {"blank_video", "no_tools"}
    for e in [*demo["stages"].values(), *demo["ablations"].values()]:
        assert set(e) >= EVAL_KEYS and e["questions"] == 4 and 0 <= e["accuracy"] <= 1
        assert e["per_kind"]["mcq"]["n"] == 4
    assert demo["synth"]["kept"] > 0
    for name in ("eval-base.json", "eval-grpo.json", "demo.png", "synth/trajectories.jsonl", "sft/config.json"):
        assert (out / name).is_file(), name
    assert (out / "data" / "videos.jsonl").is_file()
    # The GRPO stage left traces of its step and of its final eval, with the prompts' frames on disk.
    traces = [json.loads(x) for x in (out / "grpo" / "rollouts" / "step-0.jsonl").read_text().splitlines()]
    assert traces and all(t["frames"] and t["turns"] for t in traces)
    assert all((out / "grpo" / "rollouts" / f["image"]).is_file() for t in traces for f in t["frames"])
    assert (out / "grpo" / "rollouts" / "eval-1.jsonl").is_file()
    # A second run starts from fresh data in the same place; a foreign folder there is refused.
    (out / "data" / "mine.txt").write_text("keep me")
    assert main(["demo", "configs/tiny_agent_cpu.yaml", f"trainer.output_dir={out}"]) == 2
    assert (out / "data" / "mine.txt").read_text() == "keep me"
