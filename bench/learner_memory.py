"""Learner memory and step time at real model sizes: one FSDP learner rank (gloo, world 1), default config (AdamW,
k3 KL with a reference copy, fp32 master weights), one GRPO update on a text batch, with learner.fused_loss on
(the LM head inside the loss kernel) and off (log-probs, then the loss).

Each model runs in its own process so peaks do not mix. Prints a table and writes
bench/results/learner_memory-<device>.json with, per model: parameters, resident memory after building the
learner, peak resident memory over the update, the accounting (weights, gradients, AdamW moments, reference:
20 bytes per parameter on one rank), what engine/orchestration/placement.py estimates, and the update time.
Models are randomly initialised at the preset's sizes (engine/model/sized.py); they are written once under
$VTHINK_CACHE (default ~/.cache/vthink).

    vthink bench learner_memory [--presets qwen2.5-0.5b qwen2.5-vl-3b-2layer] [--tokens 512] [--fused on off]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

GiB = 1 << 30


def rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def child(preset: str, tokens: int, fused: bool) -> dict:
    import torch
    import torch.distributed as dist

    from engine.config import load_config
    from engine.learner.fsdp import FSDPLearner, LearnerSpec
    from engine.model.loading import cache_root
    from engine.model.sized import save_sized
    from engine.orchestration.placement import estimate, parameter_count
    from engine.sync import free_port

    torch.set_num_threads(os.cpu_count() or 1)
    path = cache_root() / f"sized-{preset}"
    if not (path / "config.json").is_file():
        save_sized(path, preset)
    params = parameter_count(path)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port("127.0.0.1")))
    dist.init_process_group("gloo", rank=0, world_size=1)
    base = rss()
    cfg = load_config(None, [f"model.path={path}", f"learner.fused_loss={str(fused).lower()}"])
    t0 = time.perf_counter()
    learner = FSDPLearner(LearnerSpec.of(cfg), 0, 1)
    built = rss()
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    B, L = 4, tokens // 4
    input_ids = torch.randint(10, 4000, (B, L), generator=g)
    loss_mask = torch.zeros(B, L)
    loss_mask[:, L // 2:] = 1
    batch = {"input_ids": input_ids, "attention_mask": torch.ones(B, L, dtype=torch.long), "loss_mask": loss_mask,
             "mm_token_type_ids": torch.zeros(B, L, dtype=torch.long),
             "rollout_logp": -torch.rand(B, L, generator=g) * 6 * loss_mask}
    t0 = time.perf_counter()
    learner.update(batch, torch.randn(B, generator=g))
    update_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dist.destroy_process_group()
    est_learner, _, _ = estimate(params, 1, 1, 4, True, 0)
    return {"preset": preset, "fused_loss": learner.fused, "params": params, "tokens": B * L,
            "rss_start_gib": base / GiB,
            "rss_built_gib": built / GiB, "rss_peak_gib": peak / GiB,
            "accounted_gib": 20 * params / GiB, "placement_estimate_gib": est_learner / GiB,
            "build_s": build_s, "update_s": update_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["qwen2.5-0.5b", "qwen2.5-vl-3b-2layer"])
    p.add_argument("--tokens", type=int, default=512, help="tokens in the update batch (4 rows)")
    p.add_argument("--fused", nargs="+", choices=["on", "off"], default=["on", "off"], help="learner.fused_loss")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        here = Path(__file__).resolve().parent  # bench/kernels.py would shadow the kernels package
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
        print("RESULT " + json.dumps(child(a.child, a.tokens, a.fused == ["on"])), flush=True)
        return
    rows = []
    for preset, fused in itertools.product(a.presets, a.fused):
        print(f"learner_memory: {preset}, fused_loss {fused} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", preset, "--tokens", str(a.tokens),
                               "--fused", fused],
                              capture_output=True, text=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"learner_memory: {preset} failed (exit {proc.returncode})")
        rows.append(json.loads(line[0][7:]))
    head = (f"{'model':<22} {'fused':>6} {'params':>8} {'built GiB':>10} {'peak GiB':>9} {'20 B/param':>11} "
            f"{'estimate':>9} {'update s':>9}")
    print(head)
    for r in rows:
        print(f"{r['preset']:<22} {str(r['fused_loss']):>6} {r['params'] / 1e6:>7.0f}M {r['rss_built_gib']:>10.2f} "
              f"{r['rss_peak_gib']:>9.2f} "
              f"{r['accounted_gib']:>11.2f} {r['placement_estimate_gib']:>9.2f} {r['update_s']:>9.1f}")
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu-{os.cpu_count()}core"
    out = Path(__file__).resolve().parent / "results" / f"learner_memory-{device.replace(' ', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "host": platform.machine(), "torch": torch.__version__,
                               "note": "one FSDP rank (gloo), default optimizer (AdamW) and KL reference, fp32 master",
                               "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
