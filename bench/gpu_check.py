"""The GPU check pack: what only a GPU can show, in one command, in under 8 minutes on one H100 / H200.

Runs from the source tree with no install (the lent GPU machine has torch, Triton and transformers, but no vLLM,
Ray, DALI or flash-attn, and no network):

    PYTHONPATH=. python bench/gpu_check.py            # every check; writes bench/results/gpu_check-<gpu>.json
    PYTHONPATH=. python bench/gpu_check.py --list     # the checks, one per line
    PYTHONPATH=. python bench/gpu_check.py --only learner-step hf-backend
    PYTHONPATH=. python bench/gpu_check.py --smoke    # the main risks, under 5 minutes on one H100

Each check runs in its own process with its own time limit, so a crash or a hang fails that check alone. Checks
whose tool is missing (pytest, a second GPU) are reported as skipped, with the reason. Without CUDA every check is
skipped. The kernel benchmark also writes bench/results/kernels-<gpu>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Tolerances, stated: bf16 log-probs against the fp32 model (bf16 keeps 8 mantissa bits: ~0.4% relative per
# product; log-probs of a few nats land within a few hundredths); on-device resize against Pillow (rounding of
# the same bicubic filter); `vthink plan`'s learner peak against the measured one.
BF16_LOGP_MAX, BF16_LOGP_MEAN = 0.15, 0.02
RESIZE_LEVELS = 1
PIXEL_ATOL = 1e-5 + 1 / 255 / 0.26  # one uint8 level through the normalisation (the smallest std is 0.26)
PLAN_TOLERANCE = 0.25
# `--smoke`: the checks that show the main risks in under 5 minutes on one H100.
SMOKE = ("kernel-tests", "learner-step", "learner-real-width", "hf-backend", "preprocess")
# name -> (what it shows, time limit in seconds); the limits add up to 8 minutes
CHECKS: dict[str, tuple[str, int]] = {
    "kernel-tests": ("gpu-marked kernel tests at N=16384, H=3584, V=152064 in bf16 against float64 references; "
                     "a run where every test skipped fails", 90),
    "triton-tiles": ("the tile config chosen from the device's shared memory compiles and is exact in fp32 and "
                     "bf16; aten.addmm.dtype_out (bf16 in, fp32 out) is probed", 40),
    "kernel-bench": ("bench/kernels.py at real shapes: fused log-prob vs eager and torch.compile (and Liger when "
                     "installed), grpo_loss at 1M tokens; fails where a fused kernel is slower than eager", 120),
    "learner-step": ("one GRPO update of the tiny Qwen2.5-VL and Qwen3-VL on CUDA (FSDP world size 1, NCCL), "
                     "log-probs against the model's own forward; in bf16 (mixed precision) against the fp32 model "
                     f"within {BF16_LOGP_MAX} max / {BF16_LOGP_MEAN} mean", 50),
    "learner-real-width": ("one bf16 GRPO update of Qwen2.5-VL-7B's widths with 2 layers (4096 tokens, activation "
                           "checkpointing): peak GPU memory against `vthink plan`'s learner prediction, within "
                           f"{PLAN_TOLERANCE:.0%}", 55),
    "hf-backend": ("the transformers rollout backend generating on CUDA (both architectures, a video in the prompt), "
                   "its log-probs against the model's own full-logits forward", 40),
    "preprocess": ("on-device bicubic resize and patchify against Pillow and the CPU path: at most "
                   f"{RESIZE_LEVELS} uint8 level apart, pixel values within {PIXEL_ATOL}", 30),
    "colocated-ipc": ("weights handed between two processes on one GPU through a CUDA IPC buffer "
                      "(engine/sync/ipc.py), bit-equal", 25),
    "sync-nccl": ("the NCCL weight broadcast between two GPUs, bit-equal (needs two GPUs)", 25),
}


# ---------------------------------------------------------------------------------------------------- the checks

def check_kernel_tests() -> dict:
    import importlib.util

    if importlib.util.find_spec("pytest") is None:
        return {"status": "skipped", "detail": "pytest is not installed (bring its wheel along)"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/kernels/test_kernels_gpu.py"],
                          cwd=ROOT, capture_output=True, text=True)
    tail = proc.stdout.strip().splitlines()[-1:] or [proc.stderr[-300:]]
    return {"status": pytest_verdict(proc.returncode, tail[0]), "detail": tail[0]}


def pytest_verdict(returncode: int, summary: str) -> str:
    """A pytest run passes only when it exits 0 *and* some test passed: all skipped means nothing was shown."""
    import re

    passed = re.search(r"(\d+) passed", summary)
    return "passed" if returncode == 0 and passed and int(passed.group(1)) > 0 else "failed"


def bench_verdict(rows: list[dict]) -> tuple[str, list[str]]:
    """bench/kernels.py's rows: failed, naming each, where one of ours is slower than the eager baseline."""
    slow = [f"{r['variant']} {r.get('mode', '')} N={r.get('N')} V={r.get('V')} {r.get('dtype', '')}: "
            f"{r['time_vs_eager']:.2f}x eager" for r in rows
            if r.get("variant", "").startswith("ours") and r.get("time_vs_eager", 0) > 1.0]
    return ("failed" if slow or not rows else "passed"), slow


def check_triton_tiles() -> dict:
    import torch

    from kernels.linear_logprob import linear_logprob
    from kernels.linear_logprob import triton as lt
    from kernels.linear_logprob.reference import linear_logprob_reference

    props = torch.cuda.get_device_properties(0)
    out = {"smem_optin_bytes": getattr(props, "shared_memory_per_block_optin", None),
           "addmm_dtype_out": lt.mixed_addmm_supported(torch.device("cuda"), torch.bfloat16)}
    failed = []
    for dtype in (torch.float32, torch.bfloat16):
        t = lt.tiles(dtype, torch.device("cuda"))
        out[f"tiles_{str(dtype)[6:]}"] = [t.bm, t.bn, t.bk, t.warps, t.stages]
        g = torch.Generator(device="cuda").manual_seed(0)
        n, h, v = 1024, 1024, 32003  # a vocabulary that is not a power of two
        hidden = torch.randn(n, h, device="cuda", generator=g).to(dtype).requires_grad_()
        weight = (torch.randn(v, h, device="cuda", generator=g) * 0.05).to(dtype).requires_grad_()
        targets = torch.randint(0, v, (n,), device="cuda", generator=g)
        lp, _ = linear_logprob(hidden, weight, targets, temperature=0.8)
        lp.sum().backward()
        ref, _ = linear_logprob_reference(hidden.detach(), weight.detach(), targets, 0.8, -100, torch.float64)
        err = (lp.double() - ref).abs().max().item()
        out[f"logp_max_err_{str(dtype)[6:]}"] = err
        if err > (1e-3 if dtype == torch.float32 else 5e-2) or not torch.isfinite(weight.grad).all():
            failed.append(str(dtype))
    return {"status": "failed" if failed else "passed", "detail": f"off in {failed}" if failed else "", **out}


def check_kernel_bench() -> dict:
    import torch

    proc = subprocess.run([sys.executable, "bench/kernels.py"], cwd=ROOT, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode:
        return {"status": "failed", "detail": proc.stderr[-500:], "table": lines[-40:]}
    gpu = torch.cuda.get_device_name(0).replace(" ", "_")
    rows = json.loads((ROOT / "bench" / "results" / f"kernels-{gpu}.json").read_text()).get("rows", [])
    status, slow = bench_verdict(rows)
    return {"status": status, "detail": "; ".join(slow) or ("no rows" if not rows else ""), "table": lines[-40:]}


def _tiny(arch: str):
    import torch

    from engine.model.loading import load_policy

    model, tok = load_policy(None, dtype=torch.float32, arch=arch)
    return model.cuda().eval(), tok


def _video(spec, t=2, h=4, w=6, seed=0):
    import torch

    from engine.video.types import VideoInput

    g = torch.Generator().manual_seed(seed)
    times = tuple(float(k) for k in range(2 * t))
    return VideoInput(torch.randn(t * h * w, spec.patch_width, generator=g), (t, h, w), 2.0, 0.0, times[-1], times)


def _full_forward_logprobs(model, T: dict, temperature: float = 1.0):
    """log p(token j | prefix) from the model's own forward: full [B, L, V] logits, the batch's position ids."""
    import torch

    kw = {k: T[k].cuda() for k in ("input_ids", "attention_mask", "position_ids", "pixel_values_videos",
                                   "video_grid_thw", "mm_token_type_ids") if k in T}
    with torch.no_grad():
        logits = model(**kw).logits.float() / temperature
    lp = logits[:, :-1].log_softmax(-1).gather(-1, kw["input_ids"][:, 1:, None])[..., 0]
    return torch.nn.functional.pad(lp, (1, 0)).cpu()


def check_learner_step() -> dict:
    import torch
    import torch.distributed as dist

    from engine.config import load_config
    from engine.learner.fsdp import FSDPLearner, LearnerSpec
    from engine.model.video_tokens import VIDEO_BLOCK, video_prompt_ids
    from engine.learner.batch import BatchIds, learner_batch
    from engine.rollout.batch import Sample
    from engine.sync import free_port
    from engine.video.spec import vision_spec

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port("127.0.0.1")))
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    out = {}
    for arch in ("qwen2_5_vl", "qwen3_vl"):
        learner = FSDPLearner(LearnerSpec.of(load_config(None, [f"model.arch={arch}", "algo.kl_coef=0.04"])), 0, 1)
        ref, tok = _tiny(arch)
        spec = vision_spec(ref.config)
        video = _video(spec)
        prompt = video_prompt_ids(f"<|im_start|>user\n{VIDEO_BLOCK}Why?<|im_end|>\n<|im_start|>assistant\n",
                                  [video], spec, tok)
        g = torch.Generator().manual_seed(1)
        samples = [Sample(k, "r", prompt, torch.randint(10, 200, (12,), generator=g).tolist(), [-1.0] * 12, video,
                          videos=[video]) for k in range(4)]
        T = learner_batch(samples, BatchIds.of(tok, ref.config))
        got = learner.compute_logprobs(T)
        want = _full_forward_logprobs(ref, T)
        m = T["loss_mask"].bool()
        m[:, 0] = False
        gap = (got.cpu()[m] - want[m]).abs().max().item()
        metrics = learner.update(T, torch.tensor([1.0, -1.0, 0.5, -0.5]))
        out[arch] = {"logp_gap_max": gap, "loss": metrics["loss"], "grad_norm": metrics["grad_norm"],
                     "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
        # Mixed precision: bf16 compute from the fp32 master, against the fp32 model's own forward.
        half_cfg = load_config(None, [f"model.arch={arch}", "algo.kl_coef=0.04", "model.dtype=bfloat16"])
        half = FSDPLearner(LearnerSpec.of(half_cfg), 0, 1)
        diff = (half.compute_logprobs(T).cpu()[m] - want[m]).abs()
        metrics = half.update(T, torch.tensor([1.0, -1.0, 0.5, -0.5]))
        out[arch].update(bf16_logp_gap_max=diff.max().item(), bf16_logp_gap_mean=diff.mean().item(),
                         bf16_grad_norm=metrics["grad_norm"])
    dist.destroy_process_group()
    ok = all(v["logp_gap_max"] <= 1e-3 and v["grad_norm"] == v["grad_norm"]
             and v["bf16_logp_gap_max"] <= BF16_LOGP_MAX and v["bf16_logp_gap_mean"] <= BF16_LOGP_MEAN
             and v["bf16_grad_norm"] == v["bf16_grad_norm"] for v in out.values())
    return {"status": "passed" if ok else "failed", **out}


def check_learner_real_width() -> dict:
    import torch
    import torch.distributed as dist

    from engine.config import load_config
    from engine.learner.fsdp import FSDPLearner, LearnerSpec
    from engine.model.loading import cache_root
    from engine.model.sized import save_sized
    from engine.orchestration.plan import GiB, plan
    from engine.sync import free_port

    path = cache_root() / "sized-qwen2.5-vl-7b-2layer"
    if not (path / "config.json").is_file():
        save_sized(path, "qwen2.5-vl-7b-2layer")
    tokens = 4096
    overrides = [f"model.path={path}", "model.dtype=bfloat16", "learner.activation_checkpointing=true",
                 f"learner.micro_batch_tokens={tokens}", "rollout.max_model_len=4096", "ray.learners=1",
                 "ray.rollout_workers=1", "cluster.nodes=1", "cluster.gpus_per_node=1", "video.max_frames=2",
                 "video.min_frames=2", "video.max_pixels=784"]
    cfg = load_config(None, overrides)
    predicted = plan(cfg).roles["learner"]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port("127.0.0.1")))
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    learner = FSDPLearner(LearnerSpec.of(cfg), 0, 1)
    g = torch.Generator().manual_seed(0)
    B, L = 4, tokens // 4
    mask = torch.zeros(B, L)
    mask[:, L // 2:] = 1
    batch = {"input_ids": torch.randint(10, 4000, (B, L), generator=g),
             "attention_mask": torch.ones(B, L, dtype=torch.long), "loss_mask": mask, "mm_token_type_ids": torch.zeros(B, L, dtype=torch.long),
             "rollout_logp": -torch.rand(B, L, generator=g) * 6 * mask}
    torch.cuda.reset_peak_memory_stats()
    for _ in range(2):  # the second update holds the AdamW moments the first one created
        metrics = learner.update(batch, torch.randn(B, generator=g))
    measured = torch.cuda.max_memory_allocated() / GiB
    dist.destroy_process_group()
    # The allocator's count leaves out the CUDA context, and this update sends no weights (no sync buckets).
    want = sum(v for k, v in predicted.components.items() if k not in ("runtime", "sync_buckets_rank0"))
    err = want / measured - 1
    return {"status": "passed" if abs(err) <= PLAN_TOLERANCE and metrics["grad_norm"] == metrics["grad_norm"]
            else "failed", "detail": f"plan {want:.2f} GiB vs measured {measured:.2f} GiB ({err:+.0%})",
            "predicted_gib": want, "measured_gib": measured, "components": predicted.components}


def check_hf_backend() -> dict:
    from engine.model.video_tokens import VIDEO_BLOCK, video_prompt_ids
    from engine.learner.batch import BatchIds, learner_batch
    from engine.rollout.backend import Request, SamplingParams
    from engine.rollout.batch import Sample
    from engine.rollout.hf_backend import HFBackend
    from engine.video.spec import vision_spec

    out = {}
    for arch in ("qwen2_5_vl", "qwen3_vl"):
        model, tok = _tiny(arch)
        spec = vision_spec(model.config)
        video = _video(spec, seed=2)
        prompt = video_prompt_ids(f"<|im_start|>user\n{VIDEO_BLOCK}What moves?<|im_end|>\n<|im_start|>assistant\n",
                                  [video], spec, tok)
        be = HFBackend(model, tok)
        gens = be.generate([Request(prompt, [video], SamplingParams(max_new_tokens=24, temperature=0.9, seed=s))
                            for s in range(4)])
        samples = [Sample(k, "r", prompt, g.token_ids, g.logprobs, video, videos=[video]) for k, g in enumerate(gens)]
        T = learner_batch(samples, BatchIds.of(tok, model.config))
        ref = _full_forward_logprobs(model, T, temperature=0.9)
        m = T["loss_mask"].bool()
        out[arch] = {"tokens": int(m.sum()), "logp_gap_max": (ref[m] - T["rollout_logp"][m]).abs().max().item(),
                     "device": str(next(model.parameters()).device)}
    ok = all(v["logp_gap_max"] <= 1e-3 and v["tokens"] > 0 for v in out.values())
    return {"status": "passed" if ok else "failed", **out}


def check_preprocess() -> dict:
    import numpy as np
    import torch

    from engine.video.preprocess import preprocess, resize_bicubic_pil
    from engine.video.spec import QWEN2_5_VL, QWEN3_VL

    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 256, (4, 480, 640, 3), dtype=np.uint8))
    out, ok = {}, True
    for (h, w) in ((252, 336), (96, 128), (504, 672)):
        pil = resize_bicubic_pil(frames, h, w, use_pil=True)
        gpu = resize_bicubic_pil(frames.cuda(), h, w, use_pil=False).cpu()
        levels = (pil.int() - gpu.int()).abs().max().item()
        out[f"{h}x{w}_resize_max_levels"] = levels
        ok &= levels <= RESIZE_LEVELS
    for spec in (QWEN2_5_VL, QWEN3_VL):
        h, w = 8 * spec.factor, 10 * spec.factor
        _, cpu_pv, _ = preprocess(frames, h, w, spec)
        _, gpu_pv, _ = preprocess(frames.cuda(), h, w, spec)
        gap = (cpu_pv - gpu_pv.cpu()).abs().max().item()
        out[f"{spec.arch}_pixel_values_max_gap"] = gap
        ok &= gap <= PIXEL_ATOL
    return {"status": "passed" if ok else "failed", **out}


def _ipc_receiver(conn) -> None:
    import pickle

    import torch

    from engine.sync.ipc import load_shared

    torch.manual_seed(1)
    model = torch.nn.Linear(4096, 4096).cuda()
    state = model.state_dict()

    def load(named, version):
        for name, t in named:
            state[name].copy_(t)

    version = load_shared(pickle.loads(conn.recv()), load)
    conn.send(pickle.dumps((version, {k: v.cpu() for k, v in state.items()})))


def check_colocated_ipc() -> dict:
    import multiprocessing
    import pickle

    import torch

    from engine.sync import full_state_iter, state_specs
    from engine.sync.ipc import SharedPacker

    torch.manual_seed(0)
    model = torch.nn.Linear(4096, 4096).cuda()
    t0 = time.perf_counter()
    packer = SharedPacker(state_specs(model), "cuda", dtype=torch.bfloat16)
    for name, t in full_state_iter(model):
        packer.add(name, t)
    handle = packer.share(version=3)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_ipc_receiver, args=(child,))
    proc.start()
    parent.send(pickle.dumps(handle))
    version, got = pickle.loads(parent.recv())
    proc.join(60)
    packer.release()
    equal = all(torch.equal(got[n], p.detach().to(torch.bfloat16).float().cpu()) for n, p in model.named_parameters())
    return {"status": "passed" if equal and version == 3 and proc.exitcode == 0 else "failed",
            "bytes": handle.nbytes, "seconds": time.perf_counter() - t0}


def check_sync_nccl() -> dict:
    import torch

    if torch.cuda.device_count() < 2:
        return {"status": "skipped", "detail": f"{torch.cuda.device_count()} GPU: NCCL needs one GPU per rank"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/sync/test_sync_nccl.py"],
                          cwd=ROOT, capture_output=True, text=True)
    return {"status": "passed" if proc.returncode == 0 else "failed",
            "detail": (proc.stdout.strip().splitlines() or [""])[-1]}


# ---------------------------------------------------------------------------------------------------- the runner

def run_one(name: str) -> dict:
    """Run check `name` in a child process under its time limit."""
    limit = CHECKS[name][1]
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "TRANSFORMERS_VERBOSITY": "error"}
    try:
        proc = subprocess.run([sys.executable, __file__, "--run", name], cwd=ROOT, capture_output=True, text=True,
                              timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        return {"name": name, "status": "failed", "detail": f"timed out after {limit} s", "seconds": limit}
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    result = json.loads(lines[-1][7:]) if lines else {
        "status": "failed", "detail": (proc.stderr or proc.stdout)[-1500:]}
    return {"name": name, **result, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the checks, one per line")
    ap.add_argument("--only", nargs="+", choices=list(CHECKS), help="run only these checks")
    ap.add_argument("--smoke", action="store_true", help=f"only {', '.join(SMOKE)}: under 5 minutes")
    ap.add_argument("--run", choices=list(CHECKS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.list:
        for name, (what, limit) in CHECKS.items():
            print(f"- {name}: {what} (limit {limit} s)")
        return
    if args.run:
        here = Path(__file__).resolve().parent  # bench/kernels.py would shadow the kernels package
        sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != here]
        result = globals()["check_" + args.run.replace("-", "_")]()
        print("RESULT " + json.dumps(result, default=str), flush=True)
        return
    import torch

    names = args.only or (list(SMOKE) if args.smoke else list(CHECKS))
    if not torch.cuda.is_available():
        for name in names:
            print(f"- {name}: skipped (no CUDA device)")
        return
    gpu = torch.cuda.get_device_name(0)
    results = []
    for name in names:
        r = run_one(name)
        results.append(r)
        print(f"{name:<15} {r['status']:<8} {r['seconds']:>6.1f} s  {r.get('detail', '')}", flush=True)
    out = ROOT / "bench" / "results" / f"gpu_check-{gpu.replace(' ', '_')}.json"
    out.write_text(json.dumps({"bench": "gpu_check", "device": gpu, "torch": torch.__version__,
                               "python": platform.python_version(), "checks": results}, indent=2, default=str))
    print(f"wrote {out}")
    if any(r["status"] == "failed" for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
