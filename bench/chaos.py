"""Chaos soak: `vthink train` on the embedded default while a schedule kills a random actor, beside the same run
without faults.

Both runs train configs/tiny_cpu.yaml (GRPO only, no SFT) for --steps steps with a checkpoint every --checkpoint-every
steps and every sample traced. The chaos run allows --steps restarts; a killer picks one live learner or rollout
worker process of the run (`ray::LearnerWorker*` / `ray::RolloutWorker*`) and sends it SIGKILL, as the OOM killer or
a preemption would, --every s (+-25 %, from --seed) after the run last made progress (a step finished since the
last fault): faults come faster than the ~15 s a restart takes on 2 cores would otherwise never let a step finish.

Reported: faults injected (when, whom), restarts, steps completed and logged twice, steps redone (finished, then
lost to a fault and run again), samples lost and duplicated (per step, the traced (row, sample, response) of the
run against the fault-free run's), whether every step's metrics equal the fault-free run's (wall-clock fields
aside) and whether the final weights do, the wall times and the overhead. Writes bench/results/chaos-<device>.json.

    vthink bench chaos [--steps 100] [--every 20] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # `vthink bench` runs this file by path
from e2e import tree  # noqa: E402  (a pid and its live descendants, from /proc)
ROLES = {"ray::LearnerWorker": "learner", "ray::RolloutWorker": "rollout worker"}
TIMING = ("time_", "tokens_per_s")
STEP = re.compile(r"^step (\d+)/\d+ ")
RESUMED = re.compile(r"^restart (\d+)/\d+ after .*; resumed from step (\d+)$")


def actors(pid: int) -> list[tuple[int, str]]:
    """(pid, role) of the run's live learner and rollout worker processes (Ray names them by their class)."""
    found = []
    for p in tree(pid):
        try:
            title = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        for prefix, role in ROLES.items():
            if title.startswith(prefix):
                found.append((p, role))
    return found


def train(out: Path, steps: int, checkpoint_every: int, max_restarts: int, every: float | None, seed: int) -> dict:
    """One `vthink train` run; with `every`, a killer thread SIGKILLs a random actor every ~`every` s."""
    args = [sys.executable, "-m", "engine.cli", "train", "configs/tiny_cpu.yaml", "sft.steps=0",
            f"trainer.steps={steps}", f"trainer.checkpoint_every={checkpoint_every}", f"trainer.max_restarts={max_restarts}",
            "trainer.trace_every=1", "trainer.trace_samples=64", f"trainer.output_dir={out}",
            f"data.dir={out.parent / 'data'}"]
    t0 = time.monotonic()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    faults, lines, progressed, done = [], [], threading.Event(), threading.Event()
    rng = random.Random(seed)

    def killer():
        while True:
            progressed.wait()  # a step finished since the last fault
            if done.wait(every * rng.uniform(0.75, 1.25)):
                return
            progressed.clear()
            live = actors(proc.pid)
            if not live:
                continue
            pid, role = rng.choice(live)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            faults.append({"t_s": round(time.monotonic() - t0, 1), "role": role, "pid": pid})
            print(f"  chaos: killed {role} (pid {pid}) at {faults[-1]['t_s']} s", flush=True)

    thread = threading.Thread(target=killer, daemon=True) if every else None
    if thread:
        thread.start()
    last_step, redone = 0, 0
    for line in proc.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        if m := STEP.match(line):
            last_step = int(m.group(1))
            progressed.set()
            if last_step % 10 == 0 or last_step == steps:
                print(f"  {out.name}: {line[:100]}", flush=True)
        elif m := RESUMED.match(line):
            redone += max(0, last_step - int(m.group(2)))
            last_step = int(m.group(2))
            print(f"  {out.name}: {line[:160]}", flush=True)
        elif line.startswith("vthink: "):
            print(f"  {out.name}: {line}", flush=True)
    rc = proc.wait()
    done.set()
    wall = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"{out.name} failed (exit {rc}):\n" + "\n".join(lines[-40:]))
    return {"wall_s": round(wall, 1), "faults": faults, "steps_redone": redone,
            "restarts": sum(1 for x in lines if RESUMED.match(x))}


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]


def traced(out: Path, step: int) -> list[tuple]:
    path = out / "rollouts" / f"step-{step}.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
    return [(r["row_id"], r["sample"], json.dumps(r["turns"], sort_keys=True)) for r in rows]


def stable(m: dict) -> dict:
    return {k: v for k, v in m.items() if not k.startswith(TIMING) and k not in ("restart", "restarts", "weight_version")}


def final_weights_diff(a: Path, b: Path, steps: int) -> float:
    from safetensors.torch import load_file

    name = f"checkpoints/step-{steps:08d}/model.safetensors"
    wa, wb = load_file(a / name), load_file(b / name)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--every", type=float, default=20.0, help="seconds between faults (+-25 %%)")
    ap.add_argument("--checkpoint-every", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench_chaos")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    out = ROOT / a.out
    print(f"chaos soak: {a.steps} steps of configs/tiny_cpu.yaml, a checkpoint every {a.checkpoint_every}, "
          f"an actor killed every ~{a.every:g} s; then the same run without faults", flush=True)
    chaos = train(out / "chaos", a.steps, a.checkpoint_every, a.steps, a.every, a.seed)
    clean = train(out / "clean", a.steps, a.checkpoint_every, 0, None, a.seed)

    mc, mf = metrics(out / "chaos"), metrics(out / "clean")
    steps = [m["step"] for m in mc]
    lost = duplicated = 0
    for step in range(1, a.steps + 1):
        got, want = traced(out / "chaos", step), traced(out / "clean", step)
        lost += len(set(want) - set(got))
        duplicated += len(got) - len(set(got)) + len(set(got) - set(want))
    unequal = [m["step"] for m, f in zip(mc, mf) if stable(m) != stable(f)]
    diff = final_weights_diff(out / "chaos", out / "clean", a.steps)
    result = {
        "device": f"cpu-{os.cpu_count()}core", "platform": platform.platform(), "steps": a.steps,
        "every_s": a.every, "checkpoint_every": a.checkpoint_every, "seed": a.seed,
        "faults_injected": len(chaos["faults"]),
        "faults_by_role": {r: sum(f["role"] == r for f in chaos["faults"]) for r in ROLES.values()},
        "restarts": chaos["restarts"], "steps_completed": len(set(steps)),
        "steps_logged_twice": len(steps) - len(set(steps)), "steps_redone": chaos["steps_redone"],
        "samples_lost": lost, "samples_duplicated": duplicated,
        "metrics_equal_fault_free": not unequal and len(mc) == len(mf), "steps_with_other_metrics": unequal,
        "final_weights_max_abs_diff": diff, "final_weights_equal": diff == 0.0,
        "wall_s": {"chaos": chaos["wall_s"], "fault_free": clean["wall_s"]},
        "overhead": round(chaos["wall_s"] / clean["wall_s"] - 1, 3), "faults": chaos["faults"],
        "command": "vthink bench chaos " + " ".join(sys.argv[1:]),
    }
    print(f"\n{'':28}{'chaos':>12}{'fault-free':>12}")
    print(f"{'wall time (s)':28}{chaos['wall_s']:>12.1f}{clean['wall_s']:>12.1f}")
    for key in ("faults_injected", "restarts", "steps_completed", "steps_logged_twice", "steps_redone",
                "samples_lost", "samples_duplicated", "metrics_equal_fault_free", "final_weights_equal"):
        print(f"{key:28}{str(result[key]):>12}")
    print(f"{'overhead':28}{result['overhead']:>12.1%}")
    dest = ROOT / "bench" / "results" / f"chaos-{result['device']}{'-' + a.tag if a.tag else ''}.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {dest.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
