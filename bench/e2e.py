"""End to end: `vthink train` on the embedded default, per Ray layout, measured from the outside.

Each case launches `vthink train configs/tiny_cpu.yaml` (no SFT warm-up, a few GRPO steps) as a process and
samples its whole process tree (the driver, Ray's daemons and actors) every 0.25 s from /proc (PSS every
1 s). Per case: time to the first step (launch to its progress line), median s/step and sampled tokens/s after the first
step, peak RSS and peak PSS of the tree (RSS counts a shared library once per process that maps it; PSS
splits shared pages between them, so its sum is what the tree really holds), CPU-seconds per step, and the
per-phase split the run logs: video decode, vision tower, prefill (which includes the vision tower),
sampling, tools, learner reference / forward+backward / optimizer, weight sync.

Cases: 1 + 1, 2 + 2 and auto; 1 + 1 with learner.fused_loss off; 1 + 1 one-step-off (the next step's
rollout overlaps this step's update); and "single": the same GRPO steps in one process without Ray (the
HF backend and a world-size-1 FSDP learner side by side, weights copied in memory), the baseline for memory.
All cases run in one invocation, one after another, so their ratios are side by side.

    vthink bench e2e [--steps 4] [--cases single 1+1 2+2 auto 1+1-unfused 1+1-one-step-off]
    vthink bench e2e --cases auto --steps 2 --model DIR --data-dir DIR --tag 3b2   # a real-sized model folder
    vthink bench e2e --cases 1+1 --profile     # torch profiler traces of the 2nd rollout and learner call

--profile sets $VTHINK_PROFILE_DIR (engine/telemetry/phases.py: profiled) for every case: each rollout worker and
learner records its second call; <out>/<case>/profile/ then holds a Chrome/Perfetto trace per process (phases
are its vthink/... ranges) and an operator table, whose top rows are printed.

Also the peak RSS of each role's largest process (driver, learner, rollout worker). Writes
bench/results/e2e-<device>[-<tag>].json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
ONE_ONE = ["ray.rollout_workers=1", "ray.learners=1"]
CASES = {"single": [], "1+1": ONE_ONE, "2+2": ["ray.rollout_workers=2", "ray.learners=2"], "auto": [],
         "1+1-unfused": [*ONE_ONE, "learner.fused_loss=false"],
         "1+1-one-step-off": [*ONE_ONE, "trainer.one_step_off=true"],
         "1+1-async-2": [*ONE_ONE, "trainer.max_staleness=2"]}
PHASES = ("time_decode_s", "time_vision_tower_s", "time_prefill_s", "time_sampling_s", "time_tool_s",
          "time_learner_reference_s", "time_learner_forward_backward_s", "time_optimizer_s", "time_sync_s")


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


def usage(pid: int, with_pss: bool) -> tuple[int, int, float]:
    """(RSS bytes, PSS bytes or 0, CPU seconds) of a live pid; zeros once it has gone. PSS walks the process's
    page tables (tens of ms for a 10 GB process), so the sampler asks for it once a second only."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        pss = next(int(line.split()[1]) * 1024 for line in open(f"/proc/{pid}/smaps_rollup")
                   if line.startswith("Pss:")) if with_pss else 0
        return int(fields[21]) * PAGE, pss, (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError, StopIteration):
        return 0, 0, 0.0


def role(pid: int, driver: int) -> str:
    if pid == driver:
        return "driver"
    try:
        title = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        return "other"
    return "learner" if "LearnerWorker" in title else "rollout_worker" if "RolloutWorker" in title else "other"


def train_overrides(steps: int, out: Path, overrides: list[str]) -> list[str]:
    return ["sft.steps=0", f"trainer.steps={steps}", f"trainer.output_dir={out}", "trainer.trace_every=0", *overrides]


def follow(cmd: list[str], env: dict | None = None) -> dict:
    """Run `cmd` from the repo root, sampling its whole process tree (RSS every 0.25 s, PSS every 1 s, CPU time),
    and note when each of its `step ...` lines came (seconds since launch). Returns the process (finished), the
    step times and lines, peak RSS / PSS of the tree, each role's largest process, and CPU seconds in all and at
    the first step."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak, peak_pss, cpu_seen, stop = [0], [0], {}, threading.Event()
    per_role: dict[str, int] = {}  # role -> peak RSS of its largest process

    def sample() -> None:
        tick = 0
        while not stop.is_set():
            total = total_pss = 0
            # CPU time of every process ever seen, at its last sample (exited ones keep theirs).
            for p in tree(proc.pid):
                p_rss, p_pss, p_cpu = usage(p, with_pss=tick % 4 == 0)
                total += p_rss
                total_pss += p_pss
                cpu_seen[p] = p_cpu or cpu_seen.get(p, 0.0)
                r = role(p, proc.pid)
                per_role[r] = max(per_role.get(r, 0), p_rss)
            peak[0] = max(peak[0], total)
            peak_pss[0] = max(peak_pss[0], total_pss)
            tick += 1
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    step_times, step_lines, cpu_at_first, tail = [], [], None, []
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        if line.startswith("step "):
            step_times.append(time.perf_counter() - t0)
            step_lines.append(line)
            if cpu_at_first is None:
                cpu_at_first = sum(cpu_seen.values())
    proc.wait()
    stop.set()
    sampler.join()
    return {"proc": proc, "step_times": step_times, "step_lines": step_lines, "tail": "".join(tail),
            "peak_rss": peak[0], "peak_pss": peak_pss[0], "per_role": per_role,
            "cpu_total": sum(cpu_seen.values()), "cpu_at_first": cpu_at_first}


def run_case(name: str, overrides: list[str], steps: int, out: Path, profile: bool = False) -> dict:
    if name == "single":
        cmd = [sys.executable, "-m", "engine.cli", "bench", "e2e", "--single-process-run", str(out), str(steps),
               *overrides]
    else:
        cmd = [sys.executable, "-m", "engine.cli", "train", str(ROOT / "configs/tiny_cpu.yaml"),
               *train_overrides(steps, out, overrides)]
    shutil.rmtree(out / "profile", ignore_errors=True)  # no trace of an earlier run is printed as this one's
    env = dict(os.environ, VTHINK_PROFILE_DIR=str(out / "profile")) if profile else None
    run = follow(cmd, env)
    step_times, code = run["step_times"], run["proc"].returncode
    if code or len(step_times) < 2:
        raise SystemExit(f"e2e: case {name} failed (exit {code}, {len(step_times)} steps)\n{run['tail']}")
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][1:]  # after warm-up
    gaps = [b - a for a, b in zip(step_times, step_times[1:])]
    return {"case": name, "overrides": overrides, "first_step_s": step_times[0], "step_times": step_times,
            "median_step_s": statistics.median(gaps),
            "tokens_per_s": statistics.median(m["tokens_per_s"] for m in metrics),
            "peak_rss_gib": run["peak_rss"] / 2**30, "peak_pss_gib": run["peak_pss"] / 2**30,
            "peak_rss_per_process_gib": {r: v / 2**30 for r, v in sorted(run["per_role"].items())},
            "cpu_s_per_step": (run["cpu_total"] - (run["cpu_at_first"] or 0)) / max(1, len(gaps)),
            "phases_s": {k: statistics.median(m.get(k, 0.0) for m in metrics) for k in PHASES}}


def single_process_run(out: Path, steps: int, overrides: list[str]) -> None:
    """The "single" case, run in the child process: the same GRPO steps, in this process, without Ray."""
    import torch
    import torch.distributed as dist

    from engine.config import load_config
    from engine.data.sources import prepare
    from engine.learner.fsdp import FSDPLearner, LearnerSpec
    from engine.orchestration.session import build_backend, build_rollout
    from engine.recipes.grpo import Trainer
    from engine.sync import free_port
    from engine.telemetry.metrics import MetricsLog

    cfg = load_config(str(ROOT / "configs/tiny_cpu.yaml"), train_overrides(steps, out, overrides))
    data = prepare(cfg, "train", out)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port('127.0.0.1')}", rank=0, world_size=1)
    learner = FSDPLearner(LearnerSpec.of(cfg), 0, 1)
    backend, tokenizer, config = build_backend(cfg)
    engine = build_rollout(cfg, backend, tokenizer, config, data.records)
    trained = {n for n, _ in learner.hf.named_parameters()}

    class InProcess:
        """The Cluster methods a GRPO step uses, done here: a rollout, a learner update, a weight copy."""

        version = -1

        def rollout(self, rows, group_size, params):
            return engine.run(rows, group_size, params)

        def update(self, samples):
            advantages = torch.tensor([x.advantage for x in samples])
            return learner.update(learner.batch(samples), advantages)

        def sync_weights(self, newer_than: int = -1) -> None:
            self.version = max(self.version, newer_than) + 1
            backend.load_weights(((n, t) for n, t in learner.named_full_tensors() if n in trained), self.version)

    cluster = InProcess()
    cluster.sync_weights()
    Trainer(cfg, cluster, print, data).run(steps, MetricsLog(out, steps))
    dist.destroy_process_group()


def main() -> None:
    if sys.argv[1:2] == ["--single-process-run"]:
        return single_process_run(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--out", default="runs/bench_e2e")
    ap.add_argument("--model", help="model.path (default: the embedded tiny model)")
    ap.add_argument("--data-dir", help="data.dir (default: the config's)")
    ap.add_argument("--tag", help="suffix of the results file")
    ap.add_argument("--profile", action="store_true", help="torch profiler traces of each actor's 2nd call")
    args = ap.parse_args()
    rows = []
    for name in args.cases:
        print(f"e2e: {name} ...", flush=True)
        extra = ([f"model.path={args.model}"] if args.model else []) + (
            [f"data.dir={args.data_dir}"] if args.data_dir else [])
        rows.append(run_case(name, CASES[name] + extra, args.steps, ROOT / args.out / name, args.profile))
        for table in sorted((ROOT / args.out / name / "profile").glob("*.txt")) if args.profile else ():
            print(f"{name}: torch profiler, {table.stem} (trace: {table.with_suffix('.json')})")
            print("\n".join(table.read_text().splitlines()[:14]))
    names = {"time_vision_tower_s": "vit", "time_learner_reference_s": "ref", "time_learner_forward_backward_s": "fwd+bwd",
             "time_optimizer_s": "optim"}
    print(f"{'case':<17}{'1st step s':>11}{'s/step':>8}{'tok/s':>8}{'RSS GiB':>8}{'PSS GiB':>8}{'CPU s/step':>11}  "
          + " ".join(f"{names.get(k, k[5:-2]):>8}" for k in PHASES))
    for r in rows:
        print(f"{r['case']:<17}{r['first_step_s']:>11.1f}{r['median_step_s']:>8.2f}{r['tokens_per_s']:>8.0f}"
              f"{r['peak_rss_gib']:>8.2f}{r['peak_pss_gib']:>8.2f}{r['cpu_s_per_step']:>11.2f}  "
              + " ".join(f"{r['phases_s'][k]:>8.2f}" for k in PHASES))
        print(f"{'':<17}peak RSS per process: " + ", ".join(f"{k} {v:.2f} GiB"
                                                           for k, v in r["peak_rss_per_process_gib"].items()))
    by = {r["case"]: r for r in rows}
    ratios = {}
    if "single" in by:
        for r in rows:
            if r["case"] != "single":
                ratios[f"{r['case']}_vs_single_rss"] = r["peak_rss_gib"] / by["single"]["peak_rss_gib"]
                ratios[f"{r['case']}_vs_single_pss"] = r["peak_pss_gib"] / by["single"]["peak_pss_gib"]
    if "1+1" in by and "1+1-one-step-off" in by:
        ratios["one_step_off_speedup"] = by["1+1"]["median_step_s"] / by["1+1-one-step-off"]["median_step_s"]
    if "1+1" in by and "1+1-async-2" in by:
        ratios["async_2_speedup"] = by["1+1"]["median_step_s"] / by["1+1-async-2"]["median_step_s"]
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    device = f"cpu-{os.cpu_count()}core"
    path = ROOT / "bench" / "results" / f"e2e-{device}{'-' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps({"bench": "e2e", "device": device, "host": platform.machine(), "steps": args.steps,
                                "config": "configs/tiny_cpu.yaml, sft.steps=0", "model": args.model or "tiny",
                                "results": rows, "ratios": ratios}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
