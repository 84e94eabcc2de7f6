"""The learning proof's figures: `vthink demo` per mode and data seed, with its controls, as mean +- sd over seeds.

Runs engine.recipes.demo.run_demo for every (config, seed), each into its own output folder, and writes
bench/results/demo-<device>.json holding every run's demo.json whole (plus the GRPO run's rollout/learner
log-prob gap, the max over steps of logp_gap_max) and a summary per mode: mean, sd and n over the seeds of
every accuracy (stages, ablations, controls) and of the look measures (tool calls, frames, retrieval calls per
question, zoom hit rate; tIoU of the thinker's own <time> spans). The trained controls run on the seeds given
by --control-seeds (default: all). Run: `vthink bench demo` (3 seeds per mode with the controls);
`--set model.arch=qwen3_vl --tag qwen3_vl` runs the same demos on the tiny Qwen3-VL.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

from engine.config import load_config
from engine.recipes.demo import run_demo, source_commit
from engine.telemetry.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
LOOKS = ("tool_calls_per_sample", "frames_per_question", "retrieval_calls_per_question", "zoom_hit_rate",
         "caption_names_answer")


def figures(demo: dict) -> dict[str, float]:
    """The numbers of one demo.json the summary averages, by dotted name."""
    out = {}
    for group in ("stages", "ablations", "controls"):
        for name, e in demo.get(group, {}).items():
            out[f"{name}.accuracy"] = e["accuracy"]
            out[f"{name}.format"] = e["format"]
            for key in LOOKS:
                if e.get(key) is not None and group == "stages":
                    out[f"{name}.{key}"] = e[key]
            for key, v in (e.get("time_iou") or {}).items():
                out[f"{name}.time_iou.{key}"] = v
    return out


def summarise(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """{mode: {figure: {"mean", "sd", "n"}}} over the runs of each mode (sd 0 for a single run)."""
    by_mode: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        for k, v in figures(r["demo"]).items():
            by_mode.setdefault(r["demo"]["mode"], {}).setdefault(k, []).append(v)
    return {mode: {k: {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}
                   for k, v in sorted(figs.items())} for mode, figs in by_mode.items()}


def table(summary: dict) -> str:
    lines = []
    for mode, figs in summary.items():
        lines.append(f"{mode} mode (mean +- sd over n data seeds)")
        for k, s in figs.items():
            lines.append(f"  {k:<44}{s['mean']:>8.3f} +- {s['sd']:.3f}  (n={s['n']})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", nargs="+", default=["configs/tiny_agent_cpu.yaml", "configs/tiny_thinker_cpu.yaml"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--control-seeds", nargs="*", type=int, default=None,
                    help="seeds whose demos also train the controls (default: every seed; none: --control-seeds)")
    ap.add_argument("--out", default="runs/bench_demo", help="where the demo runs write their folders")
    ap.add_argument("--device", default="cpu-2core", help="label for the results file")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    ap.add_argument("--tag", default="", help="suffix of the results file (demo-<device>-<tag>.json)")
    args = ap.parse_args()
    control_seeds = set(args.seeds if args.control_seeds is None else args.control_seeds)

    path = ROOT / "bench" / "results" / f"demo-{args.device}{'-' + args.tag if args.tag else ''}.json"
    runs = []
    for config in args.configs:
        for seed in args.seeds:
            out = Path(args.out) / f"{Path(config).stem}-seed{seed}"
            cfg = load_config(ROOT / config, [*args.set, f"data.seed={seed}", f"trainer.output_dir={out}"])
            demo = run_demo(cfg, controls=seed in control_seeds)
            gaps = [m["logp_gap_max"] for m in read_metrics(out / "grpo" / "metrics.jsonl") if "logp_gap_max" in m]
            runs.append({"config": config, "seed": seed, "demo": demo, "grpo_logp_gap_max": max(gaps)})
            summary = summarise(runs)  # written after every run, so a long bench leaves figures as it goes
            path.write_text(json.dumps({"bench": "demo", "device": args.device, "args": vars(args),
                                        "commit": source_commit(), "python": platform.python_version(),
                                        "summary": summary, "runs": runs}, indent=2))
    print(table(summarise(runs)))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
