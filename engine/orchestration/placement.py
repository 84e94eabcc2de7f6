"""How many rollout workers and FSDP learner ranks a run gets when ray.rollout_workers / ray.learners are "auto".

GPUs: one actor per GPU (learners take half, rollout workers the rest), or learner i and worker i sharing
GPU i with ray.colocate. CPUs: a worker per 4 cores (up to 8) and one learner (two from 16 cores: gloo gains
little from more), then fewer workers, then fewer learners, until the estimate below fits in 95% of the
memory available now. Per process, with P parameters (measured: `vthink train` of the 543M-parameter
3B-dims model, 2 steps on 2 cores, peaked at 16.7 GiB in the learner and 6.2 GiB in the worker):

    learner  max(8P, 30P / L) bytes: it loads the fp32 policy and its reference copy (8P) before sharding;
             during an update it holds weights, gradients, AdamW moments and the reference (20P) plus the
             optimizer step's temporaries and activations (~10P), over L ranks (no reference: 4P, 26P / L)
    worker   1.75 P * bytes(model.dtype) (weights and generation temporaries) plus video.cache_bytes
    each     + 1.5 GiB of Python, torch, transformers and Ray
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch

GiB = 1 << 30
BASE = 1.5 * GiB  # an imported torch + transformers + Ray actor, measured on the tiny model
HEADROOM = 0.95


@dataclass(frozen=True)
class Placement:
    rollout_workers: int
    learners: int
    why: str


def available_memory() -> int:
    """Bytes available now (MemAvailable, or the cgroup limit when lower)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = int(open("/sys/fs/cgroup/memory.max").read().strip())
        avail = min(avail, limit)
    except (OSError, ValueError):  # no cgroup v2 limit ("max") or no cgroup
        pass
    return avail


def parameter_count(path) -> int:
    """Parameters of the model folder `path`, from its safetensors headers (no weights are read)."""
    from pathlib import Path

    from safetensors import safe_open

    n = 0
    for f in Path(path).glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            for k in st.keys():
                shape = st.get_slice(k).get_shape()
                size = 1
                for d in shape:
                    size *= d
                n += size
    return n


def estimate(params: int, learners: int, workers: int, dtype_bytes: int, kl: bool, cache_bytes: int
             ) -> tuple[int, int, int]:
    """(bytes per learner, bytes per worker, total with the driver)."""
    learner = int(max((8 if kl else 4) * params, (30 if kl else 26) * params / learners) + BASE)
    worker = int(1.75 * params * dtype_bytes + cache_bytes + BASE)
    return learner, worker, learners * learner + workers * worker + int(BASE)


def place(cfg, params: int, cores: int | None = None, gpus: int | None = None, memory: int | None = None
          ) -> Placement:
    """The layout for cfg.ray's "auto" entries (an integer entry is kept as given)."""
    cores = cores or os.cpu_count() or 1
    gpus = torch.cuda.device_count() if gpus is None else gpus
    memory = available_memory() if memory is None else memory
    want_w, want_l = cfg.ray.rollout_workers, cfg.ray.learners
    if gpus:
        if gpus == 1 and not cfg.ray.colocate:
            from engine.errors import ConfigError

            raise ConfigError("ray.colocate", "one GPU holds one learner and one rollout worker only when they "
                                              "share it: set ray.colocate=true")
        share = gpus if cfg.ray.colocate else max(1, gpus // 2)
        learners = share if want_l == "auto" else want_l
        if cfg.ray.colocate:  # learner i and rollout worker i share GPU i
            workers = learners if want_w == "auto" else want_w
        else:
            workers = max(1, gpus - learners) if want_w == "auto" else want_w
        return Placement(workers, learners, f"{gpus} GPU(s){', colocated' if cfg.ray.colocate else ''}")
    learners = (2 if cores >= 16 else 1) if want_l == "auto" else want_l
    workers = min(8, max(1, cores // 4)) if want_w == "auto" else want_w
    dtype_bytes = torch.finfo(getattr(torch, cfg.model.dtype)).bits // 8
    kl = cfg.algo.kl_coef > 0

    def total(w: int, l: int) -> int:
        return estimate(params, l, w, dtype_bytes, kl, cfg.video.cache_bytes)[2]

    while total(workers, learners) > HEADROOM * memory:
        if want_w == "auto" and workers > 1:
            workers -= 1
        elif want_l == "auto" and learners > 1:
            learners -= 1
        else:
            break
    per_l, per_w, need = estimate(params, learners, workers, dtype_bytes, kl, cfg.video.cache_bytes)
    fits = "" if need <= HEADROOM * memory else (" - over 95% of the memory available: it may not fit; lower "
                                                 "video.cache_bytes (the worker's decoded-clip cache), use "
                                                 "bfloat16, or a bigger machine")
    why = (f"{cores} cores, {memory / GiB:.1f} GiB available, no GPU; {params / 1e6:.0f}M parameters: "
           f"~{per_l / GiB:.1f} GiB per learner, ~{per_w / GiB:.1f} GiB per worker, ~{need / GiB:.1f} GiB in all{fits}")
    return Placement(workers, learners, why)


def resolve(cfg, log=print):
    """cfg with integer ray.rollout_workers / ray.learners (the "auto" ones decided here), the choice logged."""
    if cfg.ray.rollout_workers != "auto" and cfg.ray.learners != "auto":
        return cfg
    from engine.model import policy_dir

    import ray

    from engine.orchestration.ray_start import cluster_address, wait_for_ray

    wait_for_ray(cfg)  # the GPUs are the cluster's, not this process's: a driver may run on a CPU-only head node
    have = ray.cluster_resources()
    cores = memory = None
    if cluster_address(cfg):  # a joined cluster: its nodes' cores and memory, not the driver's machine's
        cores, memory = int(have.get("CPU", 0)) or None, int(have.get("memory", 0)) or None
    p = place(cfg, parameter_count(policy_dir(cfg.model)), cores=cores, gpus=int(have.get("GPU", 0)), memory=memory)
    if cfg.ray.colocate and p.rollout_workers != p.learners:
        from engine.errors import ConfigError

        raise ConfigError("ray.colocate", f"needs as many rollout workers as learners, got {p.rollout_workers} "
                                          f"and {p.learners}")
    log(f"layout: {p.rollout_workers} rollout worker(s) + {p.learners} FSDP learner rank(s) (auto: {p.why})")
    return replace(cfg, ray=replace(cfg.ray, rollout_workers=p.rollout_workers, learners=p.learners))
