"""No work twice in an agent rollout: the transformers backend with its prefix cache on vs off, side by side.

A policy that calls tools (by default the demo's trained agent, `vthink demo` -> runs/tiny_agent_cpu) rolls out
G samples per held-out question, with the same seeds both ways, at the config's temperature. Off, every turn
re-prefills the whole conversation and re-encodes every video in it (identical ones in one call still once);
on, a group's first turn is prefilled once and each later turn only its new tokens. Prints prefilled and
reused tokens, vision-tower items, rollout time, and whether the trajectories agree, and writes
bench/results/agent_reuse-<device>.json.

    vthink bench agent_reuse [--run runs/tiny_agent_cpu] [--questions 16] [--group 4]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/tiny_agent_cpu", help="a `vthink demo` output folder")
    ap.add_argument("--questions", type=int, default=16)
    ap.add_argument("--group", type=int, default=4)
    args = ap.parse_args()

    from engine.config import load_config
    from engine.data.sources import prepare
    from engine.model import load_policy
    from engine.orchestration.session import build_rollout
    from engine.rollout.backend import SamplingParams
    from engine.rollout.hf_backend import HFBackend

    run = ROOT / args.run
    model_path = max((run / "grpo" / "checkpoints").glob("step-*"))
    cfg = load_config(str(ROOT / "configs/tiny_agent_cpu.yaml"), [f"data.dir={run / 'data'}", f"model.path={model_path}"])
    cfg = replace(cfg, video=replace(cfg.video, cache_bytes=0))  # every tool call decodes: only the backend differs
    data = prepare(cfg, "eval", run / "bench_agent_reuse", log=lambda _: None)
    rows = data.eval[: args.questions]
    model, tokenizer = load_policy(str(model_path))
    torch.set_num_threads(os.cpu_count() or 1)
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature, seed=7)
    results, samples = {}, {}
    for name, cache_bytes in (("prefix cache off", 0), ("prefix cache on", 2**30)):
        backend = HFBackend(model, tokenizer, prefix_cache_bytes=cache_bytes)
        rollout = build_rollout(cfg, backend, tokenizer, model.config, data.records)
        rollout.run(rows[:1], args.group, params)  # warm-up
        backend.counters.update(dict.fromkeys(backend.counters, 0))
        t0 = time.perf_counter()
        batch, stats = rollout.run(rows, args.group, params)
        wall = time.perf_counter() - t0
        samples[name] = batch.samples
        results[name] = {"rollout_s": wall, "generate_s": stats.loop.generate_s, **backend.counters,
                         "tool_calls": stats.loop.tool_calls, "samples": len(batch.samples),
                         "turns_per_sample": sum(x.turns for x in batch.samples) / max(1, len(batch.samples))}
    off, on = samples["prefix cache off"], samples["prefix cache on"]
    same_ids = [a.response_ids == b.response_ids for a, b in zip(off, on)]
    gap = max((abs(x - y) for a, b, ok in zip(off, on, same_ids) if ok
               for x, y in zip(a.response_logprobs, b.response_logprobs)), default=0.0)
    print(f"agent rollout, {len(rows)} held-out questions x G={args.group}, {model_path.relative_to(ROOT)}")
    cols = ["rollout_s", "generate_s", "prefill_tokens", "reused_tokens", "videos_encoded", "videos_reused",
            "tool_calls", "turns_per_sample"]
    print(f"{'backend':<18}" + "".join(f"{c:>16}" for c in cols))
    for name, r in results.items():
        print(f"{name:<18}" + "".join(f"{r[c]:>16.2f}" if isinstance(r[c], float) else f"{r[c]:>16}" for c in cols))
    print(f"same tokens in {sum(same_ids)}/{len(same_ids)} samples; max |log-prob difference| where the same: {gap:.2e}")
    ratio = results["prefix cache off"]["prefill_tokens"] / max(1, results["prefix cache on"]["prefill_tokens"])
    print(f"prefilled tokens off/on: {ratio:.1f}x; rollout time off/on: "
          f"{results['prefix cache off']['rollout_s'] / results['prefix cache on']['rollout_s']:.2f}x")
    device = f"cpu-{os.cpu_count()}core"
    out = ROOT / "bench" / "results" / f"agent_reuse-{device}.json"
    out.write_text(json.dumps({"bench": "agent_reuse", "device": device, "host": platform.machine(),
                               "model": str(model_path.relative_to(ROOT)), "questions": len(rows), "group": args.group,
                               "results": results, "same_tokens": sum(same_ids), "samples": len(same_ids),
                               "max_logprob_diff": gap}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
