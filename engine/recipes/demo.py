"""`vthink demo`: the learning proof, end to end — fresh data, base eval, synthesis, SFT, eval, GRPO, eval,
ablations and controls.

Writes into trainer.output_dir: data/ (rendered fresh), synth/trajectories.jsonl, sft/ (the SFT policy),
grpo/ (the GRPO run: metrics, checkpoints), eval-<stage>.json per evaluation, controls/<name>/ for the
trained controls, demo.json and demo.png (held-out accuracy per stage, ablation and control beside the
GRPO reward curve). demo.json:

    {"mode", "chance", "num_eval_questions", "wall_s", "commit", "config", "data_seed",
     "data": {"train_clips", "eval_clips", "eval_clips_identical_to_train"},
     "stages": {"base", "sft", "grpo"}, "ablations": {"blank_video", "no_tools" (agent mode)},
     "controls": {"dense_look", "shuffled_retrieval" (agent mode), and with --controls "sft_long",
                  "trained_blank", "trained_no_tools" (agent mode)}, "synth": {...}}

where each stage, ablation and control is the eval.json dict of engine/orchestration/evaluation.py (accuracy,
format, tool calls, frames and retrieval calls per question, zoom hit rate, caption_names_answer; time_iou in
thinker mode). A
control not run is absent. Ablations change the final policy's inputs at evaluation (blank frames, no
tools); `dense_look` makes its every frame_zoom look at the whole clip, `shuffled_retrieval` makes
clip_retrieval answer with random clips; trained controls run the same synthesis, SFT and GRPO budget
with one thing changed: `sft_long` SFT for twice the steps (no GRPO), `trained_blank` every frame blank in
training and evaluation, `trained_no_tools` the global frames only (Video-Thinker's intrinsic mode with the
agent's frame budget).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from engine.config import Config
from engine.data.near_duplicates import split_overlap
from engine.data.schema import DatasetError
from engine.data.sources import Data, prepare
from engine.data.synthetic import check_writable
from engine.errors import ConfigError
from engine.learner.checkpoint import latest
from engine.orchestration.evaluation import evaluate_session
from engine.orchestration.session import build_session
from engine.recipes.sft import run_sft
from engine.recipes.grpo import train
from engine.recipes.reader import build_if_named
from engine.synth import synthesize
from engine.telemetry.metrics import read_metrics

Log = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[2]


def fresh_data_dir(out: Path) -> Path:
    """out/data, emptied first when it holds a previous demo's dataset (and refused when it holds anything else)."""
    data = out / "data"
    if data.exists():
        try:
            check_writable(data.resolve())
        except DatasetError as e:
            raise ConfigError("trainer.output_dir", f"{e}; choose another trainer.output_dir") from None
        shutil.rmtree(data)
    return data


def source_commit() -> str | None:
    """The commit of the source checkout the engine runs from ("<sha>-dirty" with uncommitted changes outside
    bench/results, which a running bench rewrites itself)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if dirty else "")


@dataclass
class Pipeline:
    """What one synthesis -> SFT -> GRPO pipeline produced."""

    stages: dict  # stage -> eval dict
    trajectories: dict
    synth: dict
    sft_dir: Path
    final: Path  # the GRPO policy


def with_model(cfg: Config, path: Path) -> Config:
    return replace(cfg, model=replace(cfg.model, path=str(path)))


def run_pipeline(cfg: Config, data: Data, out: Path, log: Log, base: bool = True) -> Pipeline:
    """(base eval,) synthesis, SFT, eval, GRPO, eval of cfg's policy, everything written under `out`."""
    out.mkdir(parents=True, exist_ok=True)

    def stage_eval(stage: str, policy: Path | None = None, result: dict | None = None) -> dict:
        t = time.perf_counter()
        if result is None:
            result = evaluate_session(cfg, build_session(cfg if policy is None else with_model(cfg, policy), log, data))
        log_eval(log, out, stage, result, time.perf_counter() - t)
        return result

    stages = {"base": stage_eval("base")} if base else {}
    trajectories, report = synthesize(cfg, data.train, data.records, out / "synth" / "trajectories.jsonl", log=log)
    if not trajectories:
        raise RuntimeError("synthesis kept no trajectory; nothing to fine-tune on")
    sft_dir = run_sft(cfg, data, out / "sft", log, trajectories, keep_ray=True)
    stages["sft"] = stage_eval("sft", sft_dir)
    grpo_cfg = replace(with_model(cfg, sft_dir), sft=replace(cfg.sft, steps=0, epochs=0),
                       trainer=replace(cfg.trainer, output_dir=str(out / "grpo")))
    train(grpo_cfg, log)
    # train() already scored the final policy on the held-out questions, greedily, with the same scorer.
    stages["grpo"] = stage_eval("grpo", result=json.loads((out / "grpo" / "eval.json").read_text()))
    return Pipeline(stages, trajectories, report.to_json(), sft_dir, latest(out / "grpo" / "checkpoints"))


def log_eval(log: Log, out: Path, stage: str, result: dict, seconds: float) -> None:
    (out / f"eval-{stage}.json").write_text(json.dumps(result, indent=2))
    hit = result.get("zoom_hit_rate")
    iou = result.get("time_iou")
    log(f"eval {stage:<18} | {result['questions']} questions | accuracy {result['accuracy']:.3f} | "
        f"format {result['format']:.3f} | tools/q {result['tool_calls_per_sample']:.2f} | "
        f"frames/q {result['frames_per_question']:.1f}" + (f" | zoom hits {hit:.2f}" if hit is not None else "")
        + (f" | tIoU {iou['mean']:.2f}" if iou else "")
        + (f" | caption right {result['caption_names_answer']:.2f}" if "caption_names_answer" in result else "")
        + f" | {seconds:.0f} s")


def run_demo(cfg: Config, log: Log = print, controls: bool = False) -> dict:
    t0 = time.perf_counter()
    out = Path(cfg.trainer.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The demo is the synthetic learning proof: it renders its own data, whatever data.train_files say.
    cfg = replace(cfg, data=replace(cfg.data, dir=str(fresh_data_dir(out)), train_files=[], val_files=[]))
    agent = cfg.rollout.agent

    log(f"demo | {cfg.rollout.mode} mode | data seed {cfg.data.seed} | output {out}")
    build_if_named(cfg.model, log)  # model.path: tiny-reader is built once, before any process needs it
    data = prepare(cfg, "train", out, log)
    overlap = split_overlap(data)
    log(f"data | {overlap['train_clips']} training clips, {overlap['eval_clips']} held-out clips, "
        f"{overlap['eval_clips_identical_to_train']} held-out clips near-duplicates of a training clip (by pixels)")
    main = run_pipeline(cfg, data, out, log)

    def final_eval(stage: str, policy: Path, run_cfg: Config = cfg, **how) -> dict:
        t = time.perf_counter()
        result = evaluate_session(run_cfg, build_session(with_model(run_cfg, policy), log, data), **how)
        log_eval(log, out, stage, result, time.perf_counter() - t)
        return result

    ablations = {"blank_video": final_eval("blank_video", main.final, blank_video=True)}
    found: dict[str, dict] = {}
    if agent:
        ablations["no_tools"] = final_eval("no_tools", main.final, tools_off=True)
        found["dense_look"] = final_eval("dense_look", main.final, dense_look=True)
        found["shuffled_retrieval"] = final_eval("shuffled_retrieval", main.final, shuffled_retrieval=True)
    if controls:
        found.update(trained_controls(cfg, data, out / "controls", main, log))

    demo = {"mode": cfg.rollout.mode, "chance": main.stages["base"]["chance"],
            "num_eval_questions": main.stages["base"]["questions"], "wall_s": time.perf_counter() - t0,
            "commit": source_commit(), "config": cfg.to_dict(), "data_seed": cfg.data.seed, "data": overlap,
            "stages": main.stages, "ablations": ablations, "controls": found, "synth": main.synth}
    (out / "demo.json").write_text(json.dumps(demo, indent=2))
    log(demo_table(demo))
    log(f"plot: {plot_demo(demo, read_metrics(out / 'grpo' / 'metrics.jsonl'), out / 'demo.png')}")
    log(f"wrote {out / 'demo.json'}")
    return demo


def trained_controls(cfg: Config, data: Data, out: Path, main: Pipeline, log: Log) -> dict[str, dict]:
    """The controls trained the same way as the main pipeline, with one thing changed (module docstring)."""
    found = {}
    sft_long = replace(cfg, sft=replace(cfg.sft, steps=2 * cfg.sft.steps))
    t = time.perf_counter()
    policy = run_sft(sft_long, data, out / "sft_long", log, main.trajectories, keep_ray=True)
    found["sft_long"] = evaluate_session(sft_long, build_session(with_model(sft_long, policy), log, data))
    log_eval(log, out, "sft_long", found["sft_long"], time.perf_counter() - t)

    blank = replace(cfg, video=replace(cfg.video, blank=True))
    found["trained_blank"] = run_pipeline(blank, data, out / "trained_blank", log, base=False).stages["grpo"]
    if cfg.rollout.agent:
        no_tools = replace(cfg, rollout=replace(cfg.rollout, mode="thinker", max_turns=0))
        found["trained_no_tools"] = run_pipeline(no_tools, data, out / "trained_no_tools", log, base=False).stages["grpo"]
    return found


def demo_table(demo: dict) -> str:
    rows = [f"{'':<20}{'accuracy':>10}{'format':>9}{'tools/q':>9}{'frames/q':>10}{'zoom hit':>10}"]
    named = [*demo["stages"].items(), *demo["ablations"].items(), *demo.get("controls", {}).items()]
    for name, e in named:
        hit = e.get("zoom_hit_rate")
        rows.append(f"{name:<20}{e['accuracy']:>10.3f}{e['format']:>9.3f}{e['tool_calls_per_sample']:>9.2f}"
                    f"{e.get('frames_per_question', 0.0):>10.1f}" + (f"{hit:>10.2f}" if hit is not None else f"{'-':>10}"))
    for name in ("sft", "grpo"):
        iou = demo["stages"][name].get("time_iou")
        if iou:
            rows.append(f"{name} grounding of its own <time> spans: mean tIoU {iou['mean']:.3f}, "
                        f"R@0.3 {iou['r03']:.3f}, R@0.5 {iou['r05']:.3f}")
    d = demo.get("data", {})
    rows.append(f"chance {demo['chance']:.3f} over {demo['num_eval_questions']} held-out questions on "
                f"{d.get('eval_clips', '?')} clips ({d.get('eval_clips_identical_to_train', '?')} near-duplicates of "
                f"training clips); {demo['wall_s']:.0f} s in all")
    return "\n".join(rows)


def plot_demo(demo: dict, history: list[dict], path: Path) -> Path:
    """Held-out accuracy per stage, ablation and control (bars; hatched beside them, the share whose caption names
    the right option, when known) beside the GRPO reward and accuracy per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    groups = [(demo["stages"], "#4c72b0"), (demo["ablations"], "#c44e52"), (demo.get("controls", {}), "#dd8452")]
    names = [n for g, _ in groups for n in g]
    values = [e["accuracy"] for g, _ in groups for e in g.values()]
    colours = [c for g, c in groups for _ in g]
    named = [e.get("caption_names_answer") for g, _ in groups for e in g.values()]
    shown = any(v is not None for v in named)
    width = 0.4 if shown else 0.8
    left.bar([i - width / 2 * shown for i in range(len(names))], values, width, color=colours, label="accuracy")
    if shown:
        left.bar([i + width / 2 for i in range(len(names))], [v or 0.0 for v in named], width, color=colours,
                 alpha=0.45, hatch="//", label="caption names the answer")
    left.set_xticks(range(len(names)), names, rotation=30, ha="right")
    for i, v in enumerate(values):
        left.text(i - width / 2 * shown, v + 0.02, f"{v:.2f}", ha="center", fontsize=8)
    left.axhline(demo["chance"], color="grey", linestyle="--", label="chance")
    left.set_ylim(0, 1.1)
    left.set_ylabel("held-out accuracy")
    left.set_title(f"{demo['mode']} mode, {demo['num_eval_questions']} questions, data seed {demo['data_seed']}")
    left.legend()
    steps = [m["step"] for m in history if "reward_mean" in m]
    for key in ("reward_mean", "accuracy", "format"):
        right.plot(steps, [m[key] for m in history if "reward_mean" in m], marker="o", label=key)
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("GRPO step")
    right.set_title("GRPO: mean over the step's samples")
    right.grid(alpha=0.3)
    right.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
