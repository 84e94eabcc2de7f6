"""Benchmark of kernels/: fused linear log-prob (+ backward, + loss-in-forward) and grpo_loss vs baselines.

GPU: median time (CUDA events) and peak memory at N in {4096, 16384}, H=3584, V=152064 bf16 for ours,
eager PyTorch (materialised logits), torch.compile of a chunked version, Liger FLCE and CCE when
installed; TFLOP/s and the ratio to the one-GEMM (2NHV at the measured bf16 matmul rate) floor;
grpo_loss fwd+bwd vs eager at 1M tokens. CPU: our chunked path vs eager at small shapes, peak RSS
measured in a fresh child process per variant. Prints a table, writes bench/results/kernels-<device>.json.
Usage: python bench/kernels.py [--quick]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels import grpo_loss, linear_logprob  # noqa: E402
from kernels.grpo_loss.config import GRPOConfig  # noqa: E402
from kernels.grpo_loss.reference import grpo_loss_reference  # noqa: E402
from kernels.linear_grpo.op import linear_grpo_loss  # noqa: E402
from kernels.linear_logprob.reference import linear_logprob_reference  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def make(n, h, v, dtype, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, device=device).to(dtype)
    weight = (torch.randn(v, h, generator=g, device=device) * 0.02).to(dtype)
    targets = torch.randint(0, v, (n,), generator=g, device=device)
    return hidden, weight, targets


def variants(hidden, weight, targets):
    """name -> (fwd-only fn, fwd+bwd fn)."""
    def ours_fwd():
        with torch.no_grad():
            return linear_logprob(hidden, weight, targets)

    def ours_fb():
        x, w = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
        lp, en = linear_logprob(x, w, targets)
        (lp.sum() + en.sum()).backward()

    def fused_fb():
        x, w = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
        B = 16 if hidden.shape[0] % 16 == 0 else 1
        mask = torch.ones(B, hidden.shape[0] // B, dtype=torch.bool, device=hidden.device)
        old = torch.zeros(mask.shape, device=hidden.device)
        adv = torch.ones(B, device=hidden.device)
        loss, _, _, _ = linear_grpo_loss(x, w, targets, old, None, adv, mask, entropy_coef=0.01)
        loss.backward()

    def eager_fwd():
        with torch.no_grad():
            return linear_logprob_reference(hidden, weight, targets)

    def eager_fb():
        x, w = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
        lp, en = linear_logprob_reference(x, w, targets)
        (lp.sum() + en.sum()).backward()

    out = {"ours": (ours_fwd, ours_fb), "ours-loss-in-forward": (None, fused_fb), "eager": (eager_fwd, eager_fb)}
    if hidden.is_cuda:
        out.update(gpu_peers(hidden, weight, targets))
    return out


def gpu_peers(hidden, weight, targets):
    peers = {}

    def chunked_ref(h, w, t):
        lps = []
        for c in range(0, h.shape[0], 2048):
            z = (h[c:c + 2048] @ w.T).float()
            lps.append(torch.log_softmax(z, -1).gather(1, t[c:c + 2048, None]).squeeze(1))
        return torch.cat(lps)

    compiled = torch.compile(chunked_ref)

    def comp_fwd():
        with torch.no_grad():
            return compiled(hidden, weight, targets)

    def comp_fb():
        x, w = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
        compiled(x, w, targets).sum().backward()

    peers["torch.compile-chunked"] = (comp_fwd, comp_fb)
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy as lflce

        def liger_fwd():
            with torch.no_grad():
                return lflce(hidden, weight, targets, reduction="none")

        def liger_fb():
            x, w = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
            lflce(x, w, targets, reduction="sum").backward()

        peers["liger-flce"] = (liger_fwd, liger_fb)
    except ImportError:
        pass
    try:
        from cut_cross_entropy import linear_cross_entropy

        def cce_fwd():
            with torch.no_grad():
                return linear_cross_entropy(hidden, weight, targets, reduction="none")

        def cce_fb():
            x, w = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
            linear_cross_entropy(x, w, targets, reduction="sum").backward()

        peers["cce"] = (cce_fwd, cce_fb)
    except ImportError:
        pass
    return peers


def time_cuda(fn, reps=5):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def peak_cuda(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def gpu_bench(quick):
    dev = torch.cuda.get_device_name()
    h, v = 3584, 152064
    a = torch.randn(8192, h, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(h, 16384, device="cuda", dtype=torch.bfloat16)
    ms = time_cuda(lambda: a @ b)
    mm_tflops = 2 * 8192 * h * 16384 / ms / 1e9
    rows = []
    for n in ([4096] if quick else [4096, 16384]):
        hidden, weight, targets = make(n, h, v, torch.bfloat16, "cuda")
        floor_ms = 2 * n * h * v / (mm_tflops * 1e9)
        for name, (fwd, fb) in variants(hidden, weight, targets).items():
            for mode, fn, gemms in (("fwd", fwd, 1), ("fwd+bwd", fb, 3)):
                if fn is None:
                    continue
                try:
                    t = time_cuda(fn)
                    mem = peak_cuda(fn)
                except torch.OutOfMemoryError:
                    rows.append(dict(N=n, variant=name, mode=mode, error="OOM"))
                    torch.cuda.empty_cache()
                    continue
                rows.append(dict(N=n, variant=name, mode=mode, ms=t, extra_gb=mem,
                                 tflops=2 * n * h * v * gemms / t / 1e9, x_floor=t / (gemms * floor_ms)))
        del hidden, weight, targets
        torch.cuda.empty_cache()
    rows += grpo_rows("cuda", 1024, 1024)
    return dev, dict(matmul_bf16_tflops=mm_tflops, rows=rows)


def grpo_rows(device, B, T):
    g = torch.Generator(device=device).manual_seed(0)
    lp = torch.randn(B, T, generator=g, device=device) * 0.5 - 1
    old = lp + 0.2 * torch.randn(B, T, generator=g, device=device)
    ref = lp + 0.2 * torch.randn(B, T, generator=g, device=device)
    mask = torch.rand(B, T, generator=g, device=device) > 0.2
    adv = torch.randn(B, generator=g, device=device)
    cfg = GRPOConfig(dual_clip=3.0, kl_coef=0.04)

    def ours():
        x = lp.detach().requires_grad_()
        grpo_loss(x, old, ref, adv, mask, dual_clip=3.0, kl_coef=0.04)[0].backward()

    def eager():
        x = lp.detach().requires_grad_()
        grpo_loss_reference(x, old, ref, adv, mask, cfg)[0].backward()

    timer = time_cuda if device == "cuda" else time_cpu
    t_ours, t_eager = timer(ours), timer(eager)
    return [dict(variant="grpo_loss", tokens=B * T, mode="fwd+bwd", ms=t_ours, eager_ms=t_eager,
                 speedup=t_eager / t_ours)]


def time_cpu(fn, reps=3):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def child(variant, mode, n, h, v):
    """One variant in a fresh process: peak RSS above the RSS with the inputs allocated."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    hidden, weight, targets = make(n, h, v, torch.float32, "cpu")
    fwd, fb = variants(hidden, weight, targets)[variant]
    fn = fwd if mode == "fwd" else fb
    Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
    base = rss_kb("VmRSS")
    fn()  # cold: the allocator has not kept any buffer of an earlier call
    peak = rss_kb("VmHWM")
    t = time_cpu(fn)
    print(json.dumps(dict(ms=t, extra_mb=(peak - base) / 1024)))


def rss_kb(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(key)


def cpu_bench(quick):
    n, h, v = (1024, 256, 32000) if quick else (4096, 256, 32000)
    rows = []
    for mode in ("fwd", "fwd+bwd"):
        res = {}
        names = ("eager", "ours") if mode == "fwd" else ("eager", "ours", "ours-loss-in-forward")
        for name in names:
            out = subprocess.run([sys.executable, __file__, "--child", name, mode, str(n), str(h), str(v)],
                                 capture_output=True, text=True, check=True)
            res[name] = json.loads(out.stdout.strip().splitlines()[-1])
        for name in names:
            rows.append(dict(N=n, H=h, V=v, dtype="fp32", variant=name, mode=mode, ms=res[name]["ms"],
                             extra_mb=res[name]["extra_mb"], time_vs_eager=res[name]["ms"] / res["eager"]["ms"],
                             mem_vs_eager=res[name]["extra_mb"] / res["eager"]["extra_mb"]))
    rows += grpo_rows("cpu", 256, 1024)
    return f"cpu-{os.cpu_count()}core", dict(threads=int(os.environ.get("BENCH_THREADS", "2")), rows=rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=5)
    args = ap.parse_args()
    if args.child:
        name, mode, n, h, v = args.child
        return child(name, mode, int(n), int(h), int(v))
    dev, res = gpu_bench(args.quick) if torch.cuda.is_available() else cpu_bench(args.quick)
    res["device"] = dev
    tag = dev if dev.startswith("cpu") else dev.replace(" ", "-")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"kernels-{tag}.json").write_text(json.dumps(res, indent=2))
    order = ["variant", "mode", "N", "H", "V", "tokens", "dtype", "ms", "eager_ms", "speedup", "extra_mb",
             "extra_gb", "tflops", "x_floor", "time_vs_eager", "mem_vs_eager", "error"]
    keys = [k for k in order if any(k in r for r in res["rows"])]
    print(f"device: {dev}")
    print(" | ".join(f"{k:>20}" for k in keys))
    for r in res["rows"]:
        print(" | ".join(f"{r[k]:>20.3f}" if isinstance(r.get(k), float) else f"{str(r.get(k, '')):>20}" for k in keys))


if __name__ == "__main__":
    main()
