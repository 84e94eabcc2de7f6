"""`vthink demo`: the learning proof, end to end — fresh data, base eval, synthesis, SFT, eval, GRPO, eval, ablations.

Writes into trainer.output_dir: data/ (rendered fresh), synth/trajectories.jsonl, sft/ (the SFT
policy), grpo/ (the GRPO run: metrics, checkpoints), eval-<stage>.json per evaluation, demo.json and
demo.png (held-out accuracy per stage beside the GRPO reward curve). demo.json:

    {"mode", "chance", "num_eval_questions", "wall_s", "stages": {"base", "sft", "grpo"},
     "ablations": {"blank_video", "no_tools" (agent mode)}, "synth": {...}, "data_seed"}

where each stage / ablation is the eval.json dict of engine/orchestration/evaluation.py.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from engine.config import Config
from engine.errors import ConfigError
from engine.learner.checkpoint import latest
from engine.orchestration.evaluation import evaluate_session
from engine.data.schema import DatasetError
from engine.data.synthetic import check_writable
from engine.data.sources import prepare
from engine.orchestration.session import build_session
from engine.orchestration.sft import run_sft
from engine.orchestration.trainer import train
from engine.synth import synthesize
from engine.telemetry.metrics import read_metrics

Log = Callable[[str], None]


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


def run_demo(cfg: Config, log: Log = print) -> dict:
    t0 = time.perf_counter()
    out = Path(cfg.trainer.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The demo is the synthetic learning proof: it renders its own data, whatever data.train_files say.
    cfg = replace(cfg, data=replace(cfg.data, dir=str(fresh_data_dir(out)), train_files=[], val_files=[]))
    agent = cfg.rollout.mode == "agent"

    def stage_eval(stage: str, session=None, result: dict | None = None, **ablation) -> dict:
        t = time.perf_counter()
        result = result if result is not None else evaluate_session(cfg, session, **ablation)
        (out / f"eval-{stage}.json").write_text(json.dumps(result, indent=2))
        log(f"eval {stage:<12} | {result['questions']} questions | accuracy {result['accuracy']:.3f} | "
            f"format {result['format']:.3f} | tool calls/sample {result['tool_calls_per_sample']:.2f} | "
            f"{time.perf_counter() - t:.0f} s")
        return result

    log(f"demo | {cfg.rollout.mode} mode | data seed {cfg.data.seed} | output {out}")
    data = prepare(cfg, "train", out, log)
    session = build_session(cfg, log, data)
    stages = {"base": stage_eval("base", session)}

    trajectories, report = synthesize(cfg, data.train, data.records, out / "synth" / "trajectories.jsonl", log=log)
    if not trajectories:
        raise RuntimeError("synthesis kept no trajectory; nothing to fine-tune on")
    sft_dir = run_sft(cfg, data, out / "sft", log, trajectories, keep_ray=True)
    session = build_session(replace(cfg, model=replace(cfg.model, path=str(sft_dir))), log, data)
    stages["sft"] = stage_eval("sft", session)

    grpo_cfg = replace(cfg, model=replace(cfg.model, path=str(sft_dir)), sft=replace(cfg.sft, steps=0, epochs=0),
                       trainer=replace(cfg.trainer, output_dir=str(out / "grpo")))
    train(grpo_cfg, log)
    final = latest(out / "grpo" / "checkpoints")
    # train() already scored the final policy on the held-out questions, greedily, with the same scorer.
    stages["grpo"] = stage_eval("grpo", result=json.loads((out / "grpo" / "eval.json").read_text()))
    policy = build_session(replace(cfg, model=replace(cfg.model, path=str(final))), log, data)
    ablations = {"blank_video": stage_eval("blank_video", policy, blank_video=True)}
    if agent:
        ablations["no_tools"] = stage_eval("no_tools", policy, tools_off=True)

    demo = {"mode": cfg.rollout.mode, "chance": stages["base"]["chance"],
            "num_eval_questions": stages["base"]["questions"], "wall_s": time.perf_counter() - t0,
            "stages": stages, "ablations": ablations, "synth": report.to_json(), "data_seed": cfg.data.seed}
    (out / "demo.json").write_text(json.dumps(demo, indent=2))
    log(demo_table(demo))
    log(f"plot: {plot_demo(demo, read_metrics(out / 'grpo' / 'metrics.jsonl'), out / 'demo.png')}")
    log(f"wrote {out / 'demo.json'}")
    return demo


def demo_table(demo: dict) -> str:
    rows = [f"{'':<14}{'accuracy':>10}{'format':>9}{'tools/q':>9}"]
    for name, e in [*demo["stages"].items(), *demo["ablations"].items()]:
        rows.append(f"{name:<14}{e['accuracy']:>10.3f}{e['format']:>9.3f}{e['tool_calls_per_sample']:>9.2f}")
    rows.append(f"chance {demo['chance']:.3f} over {demo['num_eval_questions']} held-out questions; "
                f"{demo['wall_s']:.0f} s in all")
    return "\n".join(rows)


def plot_demo(demo: dict, history: list[dict], path: Path) -> Path:
    """Held-out accuracy per stage and ablation (bars) beside the GRPO reward and accuracy per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    names = [*demo["stages"], *demo["ablations"]]
    values = [demo["stages"].get(n, demo["ablations"].get(n))["accuracy"] for n in names]
    colours = ["#4c72b0"] * len(demo["stages"]) + ["#c44e52"] * len(demo["ablations"])
    left.bar(names, values, color=colours)
    for i, v in enumerate(values):
        left.text(i, v + 0.02, f"{v:.2f}", ha="center")
    left.axhline(demo["chance"], color="grey", linestyle="--", label="chance")
    left.set_ylim(0, 1.1)
    left.set_ylabel("held-out accuracy")
    left.set_title(f"{demo['mode']} mode, {demo['num_eval_questions']} questions")
    left.legend()
    steps = [m["step"] + 1 for m in history if "reward_mean" in m]
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
