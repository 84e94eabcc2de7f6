"""The transformers backend's decode loop before and after the preallocated KV cache, side by side.

Before: the loop as it was at `--before` (transformers' DynamicCache, which concatenates every layer's whole K
and V at each token, and an attention mask grown by one column per token). After: this checkout's
(engine/rollout/kv_cache.py: one buffer per layer sized for prompt + max_new_tokens, written in place).
Same tiny model, same prompts (real rendered clips through the rollout's own prompt building), same seeds;
rounds interleave the two so machine noise hits both. Checks that both give the same tokens, prints the
tokens/s of each and a torch profiler table of one call each (self CPU time per operator), and writes
bench/results/hf_decode-<device>.json.

    vthink bench hf_decode [--before c6f8950~1] [--prompts 8] [--group 4] [--max-new-tokens 96] [--rounds 3]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def backend_class_at(rev: str, tmp: Path):
    """engine/rollout/hf_backend.py as it was at `rev`, imported beside this checkout's (same engine package)."""
    src = subprocess.run(["git", "show", f"{rev}:engine/rollout/hf_backend.py"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    path = tmp / "hf_backend_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("hf_backend_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.HFBackend


def op_table(fn, rows: int = 12) -> tuple[list[dict], float]:
    """The top operators by self CPU time over one call of fn, and the call's wall time."""
    from torch.profiler import ProfilerActivity, profile

    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    wall = time.perf_counter() - t
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "calls": e.count, "self_cpu_s": e.self_cpu_time_total / 1e6,
             "share_of_wall": e.self_cpu_time_total / 1e6 / wall} for e in events[:rows]], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="c6f8950~1", help="the git revision whose decode loop is 'before' (default: the last one on DynamicCache)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from engine.config import load_config
    from engine.orchestration.session import build_session
    from engine.rollout.backend import Request, SamplingParams
    from engine.rollout.hf_backend import HFBackend

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        Before = backend_class_at(args.before, tmp)
        cfg = load_config(str(ROOT / "configs/tiny_agent_cpu.yaml"), [
            f"data.dir={tmp / 'data'}", f"data.num_videos={max(4, args.prompts * 2)}", "model.path=tiny"])
        session = build_session(cfg, log=lambda _: None)
        prompts = [session.rollout.prepare(r) for r in session.train_rows[: args.prompts]]
        # Stop strings as the agent loop sets them, so the per-token stop check costs what it costs there.
        requests = [Request(p.prompt_ids, p.videos, SamplingParams(
            max_new_tokens=args.max_new_tokens, temperature=1.0, seed=1000 * i + g, stop=("</tool_call>", "</answer>")))
            for i, p in enumerate(prompts) for g in range(args.group)]
        backends = {"before (DynamicCache)": Before(session.model, session.tokenizer, prefix_cache_bytes=0),
                    "after (preallocated)": HFBackend(session.model, session.tokenizer, prefix_cache_bytes=0)}
        outputs = {name: be.generate(requests) for name, be in backends.items()}  # warm-up, and the tokens
        walls = {name: [] for name in backends}
        for _ in range(args.rounds):
            for name, be in backends.items():
                t = time.perf_counter()
                be.generate(requests)
                walls[name].append(time.perf_counter() - t)
        tables = {name: op_table(lambda be=be: be.generate(requests)) for name, be in backends.items()}

    tokens = sum(len(g.token_ids) for g in outputs["after (preallocated)"])
    a, b = outputs.values()
    same = sum(x.token_ids == y.token_ids for x, y in zip(a, b))
    results = {name: {"median_s": statistics.median(w), "walls_s": w,
                      "tokens_per_s": tokens / statistics.median(w), "ops": tables[name][0]} for name, w in walls.items()}
    before, after = results.values()
    print(f"decode: {len(requests)} rows ({args.prompts} prompts x G={args.group}), {tokens} tokens, "
          f"{len(prompts[0].prompt_ids)}-token prompts, tiny model, {args.rounds} interleaved rounds")
    print(f"{'loop':<24}{'median s':>10}{'tokens/s':>10}")
    for name, r in results.items():
        print(f"{name:<24}{r['median_s']:>10.3f}{r['tokens_per_s']:>10.0f}")
    speedup = before["median_s"] / after["median_s"]
    print(f"after/before tokens/s: {speedup:.2f}x; same tokens in {same}/{len(requests)} rows")
    for name, r in results.items():
        print(f"\n{name}: operators by self CPU time over one call ({tables[name][1]:.2f} s wall)")
        for op in r["ops"]:
            print(f"  {op['op']:<40}{op['calls']:>8}{op['self_cpu_s']:>9.3f} s{100 * op['share_of_wall']:>7.1f}%")
    device = f"cpu-{os.cpu_count()}core"
    out = ROOT / "bench" / "results" / f"hf_decode-{device}.json"
    out.write_text(json.dumps({"bench": "hf_decode", "device": device, "host": platform.machine(),
                               "before": args.before, "rows": len(requests), "tokens": tokens,
                               "prompt_tokens": len(prompts[0].prompt_ids), "rounds": args.rounds,
                               "same_tokens_rows": same, "speedup": speedup, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
