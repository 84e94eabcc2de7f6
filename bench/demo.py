"""The learning proof's figures: `vthink demo` for each mode and data seed, one table, one JSON.

Runs engine.orchestration.demo.run_demo for every (config, seed), each into its own output folder, and
writes bench/results/demo-<device>.json with every demo.json plus the GRPO run's rollout/learner
log-prob gap (max over steps of logp_gap_max). Run: `vthink bench demo` (about 25 minutes on 2 cores);
`vthink bench demo --set model.arch=qwen3_vl --tag qwen3_vl` runs the same demos on the tiny Qwen3-VL.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from engine.config import load_config
from engine.orchestration.demo import run_demo
from engine.telemetry.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", nargs="+", default=["configs/tiny_agent_cpu.yaml", "configs/tiny_thinker_cpu.yaml"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--out", default="runs/bench_demo", help="where the demo runs write their folders")
    ap.add_argument("--device", default="cpu-2core", help="label for the results file")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    ap.add_argument("--tag", default="", help="suffix of the results file (demo-<device>-<tag>.json)")
    args = ap.parse_args()

    runs = []
    for config in args.configs:
        for seed in args.seeds:
            out = Path(args.out) / f"{Path(config).stem}-seed{seed}"
            cfg = load_config(ROOT / config, [*args.set, f"data.seed={seed}", f"trainer.output_dir={out}"])
            demo = run_demo(cfg)
            gaps = [m["logp_gap_max"] for m in read_metrics(out / "grpo" / "metrics.jsonl") if "logp_gap_max" in m]
            runs.append({"config": config, "seed": seed, "demo": demo, "grpo_logp_gap_max": max(gaps)})

    header = f"{'run':<28}{'base':>7}{'sft':>7}{'grpo':>7}{'blank':>7}{'no tools':>9}{'gap max':>10}{'wall s':>8}"
    print(header)
    for r in runs:
        d = r["demo"]
        acc = [d["stages"][k]["accuracy"] for k in ("base", "sft", "grpo")]
        blank = d["ablations"]["blank_video"]["accuracy"]
        no_tools = d["ablations"].get("no_tools", {}).get("accuracy")
        name = f"{d['mode']} seed {r['seed']}"
        print(f"{name:<28}" + "".join(f"{a:>7.3f}" for a in acc) + f"{blank:>7.3f}"
              + (f"{no_tools:>9.3f}" if no_tools is not None else f"{'-':>9}")
              + f"{r['grpo_logp_gap_max']:>10.1e}{d['wall_s']:>8.0f}")
    path = ROOT / "bench" / "results" / f"demo-{args.device}{'-' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps({"bench": "demo", "device": args.device, "args": vars(args),
                                "python": platform.python_version(), "runs": runs}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
