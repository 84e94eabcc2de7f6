"""`vthink plan` against measured peaks: host memory per role on CPU, at two real widths.

For each preset (engine/model/sized.py: Qwen2.5-0.5B's dims, and Qwen2.5-VL-3B's widths with 2 layers), each role
runs in its own process, as in a run, and its peak resident memory (ru_maxrss) is compared with the plan of the same
config (engine/orchestration/plan.py):

  learner  one FSDP rank (gloo, world 1), default optimizer and KL reference, one GRPO update of 512 tokens
           (bench/learner_memory.py's child, fused loss on)
  rollout  the transformers backend loading the policy, then G=4 samples of 64 new tokens after a 448-token prompt

The plan's config pins what the measurement does: rollout.max_model_len=512 and learner.micro_batch_tokens=512
(the longest sequence and the micro-batch), one prompt per step, no video cache, a single-frame budget (the
batches are text). Prints a table and writes bench/results/plan-<device>.json: a list of
{"model", "role", "predicted_gib", "measured_gib"}.

    vthink bench plan [--presets qwen2.5-0.5b qwen2.5-vl-3b-2layer]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

GiB = 1 << 30
TOKENS = 512
OVERRIDES = ["rollout.max_model_len=512", f"learner.micro_batch_tokens={TOKENS}", "trainer.prompts_per_step=1",
             "rollout.group_size=4", "rollout.max_new_tokens=64", "ray.rollout_workers=1", "ray.learners=1",
             "video.cache_bytes=0", "video.min_frames=2", "video.max_frames=2", "video.max_pixels=784",
             "cluster.gpus_per_node=0", "cluster.nodes=1"]


def sized_path(preset: str) -> Path:
    from engine.model.loading import cache_root
    from engine.model.sized import save_sized

    path = cache_root() / f"sized-{preset}"
    if not (path / "config.json").is_file():
        save_sized(path, preset)
    return path


def rollout_child(preset: str) -> dict:
    import torch

    from engine.model import load_policy
    from engine.rollout.backend import Request, SamplingParams
    from engine.rollout.hf_backend import HFBackend

    torch.set_num_threads(os.cpu_count() or 1)
    model, tok = load_policy(str(sized_path(preset)), dtype=torch.float32)
    backend = HFBackend(model.eval(), tok)
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(10, 4000, (TOKENS - 64,), generator=g).tolist()
    out = backend.generate([Request(prompt, params=SamplingParams(max_new_tokens=64, temperature=1.0, seed=i))
                            for i in range(4)])
    return {"generated": sum(len(o.token_ids) for o in out),
            "rss_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB}


def measure(role: str, preset: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", role, preset], capture_output=True, text=True,
                          env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"plan bench: {role} of {preset} failed (exit {proc.returncode})")
    return json.loads(line[0][7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["qwen2.5-0.5b", "qwen2.5-vl-3b-2layer"])
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        here = Path(__file__).resolve().parent  # bench/kernels.py would shadow the kernels package
        sys.path[:] = [x for x in sys.path if Path(x or ".").resolve() != here]
        role, preset = a.child
        if role == "learner":
            import importlib.util

            spec = importlib.util.spec_from_file_location("learner_memory", here / "learner_memory.py")
            learner_memory = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(learner_memory)
            result = learner_memory.child(preset, TOKENS, True)
        else:
            result = rollout_child(preset)
        print("RESULT " + json.dumps(result), flush=True)
        return
    import torch

    from engine.config import load_config
    from engine.orchestration.plan import plan

    rows = []
    for preset in a.presets:
        path = sized_path(preset)
        predicted = plan(load_config(None, [f"model.path={path}", *OVERRIDES]))
        for role in ("learner", "rollout"):
            print(f"plan bench: {preset}, {role} ...", flush=True)
            m = measure(role, preset)
            rows.append({"model": preset, "role": role,
                         "predicted_gib": round(predicted.roles[role].peak_gib, 3),
                         "measured_gib": round(m["rss_peak_gib"], 3),
                         "components": {k: round(v, 3) for k, v in predicted.roles[role].components.items()}})
    print(f"{'model':<22} {'role':<8} {'predicted GiB':>14} {'measured GiB':>13} {'error':>7}")
    for r in rows:
        err = r["predicted_gib"] / r["measured_gib"] - 1
        print(f"{r['model']:<22} {r['role']:<8} {r['predicted_gib']:>14.2f} {r['measured_gib']:>13.2f} {err:>+7.1%}")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu-{os.cpu_count()}core"
    out = Path(__file__).resolve().parent / "results" / f"plan-{device.replace(' ', '_')}.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
