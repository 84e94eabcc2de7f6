"""End to end: `vthink train` on the embedded default, per Ray layout, measured from the outside.

Each case launches `vthink train configs/tiny_cpu.yaml` (no SFT warm-up, a few GRPO steps) as a process and
samples its whole process tree (the driver, raylet, Ray's actors) every 0.25 s from /proc. Per case:
time to the first step (launch to its progress line), median s/step and sampled tokens/s after the first
step, peak RSS of the tree, CPU-seconds per step, and the per-phase split the trainer logs (decode, generate,
tools, learner update, weight sync). Cases: 1 + 1, 2 + 2 and auto, and 1 + 1 with learner.fused_loss off.
All cases run in one invocation, one after another, so their ratios are side by side.

    vthink bench e2e [--steps 4] [--cases 1+1 2+2 auto 1+1-unfused]
    vthink bench e2e --cases auto --steps 2 --model DIR --data-dir DIR --tag 3b2   # a real-sized model folder

Also the peak RSS of each role's largest process (driver, learner, rollout worker). Writes
bench/results/e2e-<device>[-<tag>].json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
CASES = {"1+1": ["ray.rollout_workers=1", "ray.learners=1"], "2+2": ["ray.rollout_workers=2", "ray.learners=2"],
         "auto": [], "1+1-unfused": ["ray.rollout_workers=1", "ray.learners=1", "learner.fused_loss=false"]}
PHASES = ("time_decode_s", "time_generate_s", "time_tool_s", "time_update_s", "time_sync_s")


def tree(pid: int) -> list[int]:
    """pid and every live descendant."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def usage(pids: list[int]) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) summed over live pids."""
    rss = cpu = 0
    for p in pids:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            rss += int(fields[21]) * PAGE
            cpu += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            pass
    return rss, cpu


def role(pid: int, driver: int) -> str:
    if pid == driver:
        return "driver"
    try:
        title = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        return "other"
    return "learner" if "LearnerWorker" in title else "rollout_worker" if "RolloutWorker" in title else "other"


def run_case(name: str, overrides: list[str], steps: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "engine.cli", "train", str(ROOT / "configs/tiny_cpu.yaml"), "sft.steps=0",
           f"trainer.steps={steps}", f"trainer.output_dir={out}", "trainer.trace_every=0", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, cpu_seen, stop = [0], {}, threading.Event()
    per_role: dict[str, int] = {}  # role -> peak RSS of its largest process

    def sample() -> None:
        while not stop.is_set():
            total = 0
            # CPU time of every process ever seen, at its last sample (exited ones keep theirs).
            for p in tree(proc.pid):
                p_rss, p_cpu = usage([p])
                total += p_rss
                cpu_seen[p] = p_cpu or cpu_seen.get(p, 0.0)
                r = role(p, proc.pid)
                per_role[r] = max(per_role.get(r, 0), p_rss)
            peak[0] = max(peak[0], total)
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    step_times, cpu_at_first = [], None
    for line in proc.stdout:
        if line.startswith("step "):
            step_times.append(time.perf_counter() - t0)
            if cpu_at_first is None:
                cpu_at_first = sum(cpu_seen.values())
    proc.wait()
    stop.set()
    sampler.join()
    if proc.returncode or len(step_times) < 2:
        raise SystemExit(f"e2e: case {name} failed (exit {proc.returncode}, {len(step_times)} steps)")
    cpu_total = sum(cpu_seen.values())
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][1:]  # after warm-up
    gaps = [b - a for a, b in zip(step_times, step_times[1:])]
    return {"case": name, "overrides": overrides, "first_step_s": step_times[0],
            "median_step_s": statistics.median(gaps),
            "tokens_per_s": statistics.median(m["tokens_per_s"] for m in metrics),
            "peak_rss_gib": peak[0] / 2**30,
            "peak_rss_per_process_gib": {r: v / 2**30 for r, v in sorted(per_role.items())},
            "cpu_s_per_step": (cpu_total - (cpu_at_first or 0)) / max(1, len(gaps)),
            "phases_s": {k: statistics.median(m.get(k, 0.0) for m in metrics) for k in PHASES}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--out", default="runs/bench_e2e")
    ap.add_argument("--model", help="model.path (default: the embedded tiny model)")
    ap.add_argument("--data-dir", help="data.dir (default: the config's)")
    ap.add_argument("--tag", help="suffix of the results file")
    args = ap.parse_args()
    rows = []
    for name in args.cases:
        print(f"e2e: {name} ...", flush=True)
        extra = ([f"model.path={args.model}"] if args.model else []) + (
            [f"data.dir={args.data_dir}"] if args.data_dir else [])
        rows.append(run_case(name, CASES[name] + extra, args.steps, ROOT / args.out / name))
    print(f"{'case':<13}{'1st step s':>11}{'s/step':>8}{'tok/s':>8}{'peak GiB':>9}{'CPU s/step':>11}  "
          + " ".join(f"{k[5:-2]:>8}" for k in PHASES))
    for r in rows:
        print(f"{r['case']:<13}{r['first_step_s']:>11.1f}{r['median_step_s']:>8.2f}{r['tokens_per_s']:>8.0f}"
              f"{r['peak_rss_gib']:>9.2f}{r['cpu_s_per_step']:>11.2f}  "
              + " ".join(f"{r['phases_s'][k]:>8.2f}" for k in PHASES))
        print(f"{'':<13}peak RSS per process: " + ", ".join(f"{k} {v:.2f} GiB"
                                                           for k, v in r["peak_rss_per_process_gib"].items()))
    device = f"cpu-{os.cpu_count()}core"
    path = ROOT / "bench" / "results" / f"e2e-{device}{'-' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps({"bench": "e2e", "device": device, "host": platform.machine(), "steps": args.steps,
                                "config": "configs/tiny_cpu.yaml, sft.steps=0", "model": args.model or "tiny",
                                "results": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
