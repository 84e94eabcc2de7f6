"""Host memory per learner rank while the learner is built: the sharded build (meta device, each rank reading only
its own rows of the checkpoint) against the full build it replaced (every rank: the full fp32 model, a deep-copied
reference, then shard both), side by side, on real gloo process groups.

Each (build, world size) runs in fresh processes; every rank reports its peak resident memory during the build and
its resident memory after it. Predicted, with P = the fp32 model's bytes and W ranks, on top of the runtime:
  full build:    every rank ~2P (model + reference) before sharding frees them, then 2P / W;
  sharded build: every rank 2P / W of shards, plus P / W of the checkpoint file it read, which is page cache
                 mapped into the process (counted in RSS, but shared and reclaimable).
Prints a table and writes bench/results/learner_build-<device>.json. Models are the sized presets of
engine/model/sized.py (randomly initialised, written once under $VTHINK_CACHE).

    vthink bench learner_build [--preset qwen2.5-0.5b] [--world 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
from pathlib import Path

GiB = 1 << 30


def rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def full_build(cfg, mesh):
    """What every rank did before: load the whole model, deep-copy it as the reference, shard both."""
    import copy

    import torch

    from engine.learner.fsdp import _shard
    from engine.learner.logprob import LogprobModel
    from engine.model import load_policy

    hf, _ = load_policy(cfg.model.path, dtype=torch.float32)
    ref = copy.deepcopy(hf).requires_grad_(False)
    return _shard(LogprobModel(hf), mesh, None), _shard(LogprobModel(ref), mesh, None)


def rank_main(rank: int, world: int, port: int, path: str, build: str, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from engine.config import load_config
    from engine.learner.fsdp import _build_sharded

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    cfg = load_config(None, [f"model.path={path}"])
    mesh = init_device_mesh("cpu", (world,))
    start = rss()
    if build == "full":
        models = full_build(cfg, mesh)
    else:
        models = _build_sharded(cfg, rank, mesh, None, torch.device("cpu"), cfg.learner)[:2]
    import gc

    gc.collect()
    after = rss()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    shard_bytes = sum(p.to_local().numel() * 4 for m in models for p in m.parameters())
    Path(out, f"{build}-{rank}.json").write_text(json.dumps(
        {"rank": rank, "start_gib": start / GiB, "peak_gib": peak / GiB, "after_gib": after / GiB,
         "shards_gib": shard_bytes / GiB}))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="qwen2.5-0.5b")
    p.add_argument("--world", type=int, default=2)
    a = p.parse_args()
    here = Path(__file__).resolve().parent  # bench/kernels.py would shadow the kernels package
    sys.path[:] = [x for x in sys.path if Path(x or ".").resolve() != here]
    import tempfile

    import torch
    import torch.multiprocessing as mp

    from engine.model.loading import cache_root
    from engine.model.sized import save_sized
    from engine.orchestration.placement import parameter_count
    from engine.sync import free_port

    path = cache_root() / f"sized-{a.preset}"
    if not (path / "config.json").is_file():
        save_sized(path, a.preset)
    params = parameter_count(path)
    full_gib = 4 * params / GiB
    rows = []
    for build in ("full", "sharded"):
        print(f"learner_build: {a.preset}, {build} build, {a.world} ranks ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(rank_main, args=(a.world, free_port("127.0.0.1"), str(path), build, tmp), nprocs=a.world, join=True)
            for r in range(a.world):
                row = json.loads(Path(tmp, f"{build}-{r}.json").read_text())
                base = row["start_gib"]
                predicted = (2 * full_gib if build == "full" else full_gib / a.world) + 2 * full_gib / a.world
                rows.append({"build": build, **row, "peak_over_start_gib": row["peak_gib"] - base,
                             "predicted_peak_over_start_gib": predicted})
    print(f"{'build':<9}{'rank':>5}{'peak-start GiB':>16}{'predicted':>11}{'after GiB':>11}{'shards GiB':>12}")
    for r in rows:
        print(f"{r['build']:<9}{r['rank']:>5}{r['peak_over_start_gib']:>16.2f}{r['predicted_peak_over_start_gib']:>11.2f}"
              f"{r['after_gib']:>11.2f}{r['shards_gib']:>12.2f}")
    device = f"cpu-{os.cpu_count()}core"
    out = here / "results" / f"learner_build-{device}.json"
    out.write_text(json.dumps({"bench": "learner_build", "device": device, "host": platform.machine(),
                               "torch": torch.__version__, "preset": a.preset, "params": params, "world": a.world,
                               "fp32_model_gib": full_gib, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
