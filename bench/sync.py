"""Benchmark weight sync (engine.sync) against a raw broadcast of one flat tensor of the same size.

Local processes over a gloo sync group: rank 0 is the learner (sender), the others rollout
workers loading in place. Reports GB/s of our bucketed sync (pack, checksum, broadcast, unpack,
copy into the rollout model) next to one `broadcast` of a preallocated flat tensor holding the
same number of wire bytes, then the time to sync the tiny Qwen2.5-VL model and a ~1B-parameter
stack of Linear layers (fp32 learner, bf16 wire and rollout), scaled down if memory is short.
`bound` is the best sync/raw a pack + unpack can reach when the transport leaves no core free:
raw / (raw + one memcpy of the same bytes), measured in the same run. Writes bench/results/sync-<device>.json and prints a table. Run: `python bench/sync.py`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.multiprocessing as mp
from torch import nn

from engine.sync import (WeightReceiver, WeightSender, free_port, init_sync_group,
                         module_loader)
from engine.sync.layout import checksum

GB = 1e9
BIG_WIDTH = 4096


def mem_available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def linear_stack(layers: int, width: int, dtype: torch.dtype, fill_seed: int | None) -> nn.Module:
    """`layers` Linear(width, width) layers; filled with seeded uniform values, or left empty."""
    model = nn.Sequential(*[nn.Linear(width, width, dtype=dtype, device="meta")
                            for _ in range(layers)]).to_empty(device="cpu")
    if fill_seed is not None:
        g = torch.Generator().manual_seed(fill_seed)
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-0.05, 0.05, generator=g)
    return model


def barrier(group) -> None:
    group.pg.allreduce([torch.zeros(1)]).wait()


def timed_side_by_side(group, fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Median seconds per call of each fn, measured barrier to barrier (so the slowest rank
    counts). The fns take turns within every repetition, so load from other users of the
    machine hits them alike."""
    for fn in fns.values():
        fn()  # warm-up: first touch of receive pages, layout message, buffer allocation
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for key, fn in fns.items():
            barrier(group)
            t0 = time.perf_counter()
            fn()
            barrier(group)
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def wire_bytes(model: nn.Module, dtype: torch.dtype | None) -> int:
    size = (dtype or torch.float32).itemsize
    return sum(-(-p.numel() * (size if p.is_floating_point() else p.element_size()) // 8) * 8
               for p in model.parameters())


def model_checksum(tensors) -> list[int]:
    """Order-dependent digest of a model's bytes, for the bit-equality check after the bench."""
    total = [0, 0]
    for t in tensors:
        raw = t.detach().contiguous().view(-1).view(torch.uint8)
        raw = torch.cat([raw, raw.new_zeros(-raw.numel() % 8)])
        c = checksum(raw).tolist()
        total = [(total[0] * 31 + c[0]) % 2**64, (total[1] * 31 + c[1]) % 2**64]
    return total


def _signed(words: list[int]) -> list[int]:
    return [w - 2**64 if w >= 2**63 else w for w in words]


def run_case(group, name: str, learner: Callable[[], nn.Module], rollout: Callable[[], nn.Module],
             wire: torch.dtype | None, bucket_bytes: int, depth: int, reps: int) -> dict:
    """Time a raw broadcast of the wire bytes and our sync, side by side; verify bit-equality."""
    rank = group.rank
    model = learner() if rank == 0 else rollout()
    nbytes = wire_bytes(model, wire)
    flat = torch.empty(nbytes, dtype=torch.uint8)
    flat.fill_(rank)  # touch the pages before timing
    if rank == 0:
        sender = WeightSender(group, bucket_bytes=bucket_bytes, dtype=wire, depth=depth)
        params = list(model.named_parameters())
        sync = lambda cks: lambda: sender.send(params, checksum=cks)  # noqa: E731
    else:
        receiver, load = WeightReceiver(group, depth=depth), module_loader(model)
        sync = lambda cks: lambda: receiver.receive(load)  # noqa: E731
    # copy_s: one memcpy of the wire bytes in every process at once -- the pack (sender) and unpack (receiver)
    # passes our sync adds to a raw broadcast. On 2 cores the transport keeps both busy, so those passes
    # cannot hide behind it: sync >= raw + copy, i.e. sync/raw <= raw / (raw + copy).
    dst = torch.empty_like(flat)
    t = timed_side_by_side(group, {"raw_s": lambda: group.broadcast(flat).wait(),
                                   "sync_s": sync(True), "sync_no_checksum_s": sync(False),
                                   "copy_s": lambda: dst.copy_(flat)}, reps)
    flat = dst = None  # freed before the next case (the lambdas above are done with them)
    raw_s = t["raw_s"]
    row: dict[str, Any] = dict(case=name, params=sum(p.numel() for p in model.parameters()),
                               wire_dtype=str(wire or "as is").removeprefix("torch."),
                               wire_bytes=nbytes, bucket_bytes=bucket_bytes, depth=depth, **t)
    # bit-equality: rollout weights == learner weights cast to the wire (= rollout) dtype
    if rank == 0:
        digest = model_checksum(p.to(wire) if wire is not None and p.is_floating_point() else p
                                for p in model.parameters())
        want = torch.tensor(_signed(digest), dtype=torch.int64)
    else:
        want = torch.zeros(2, dtype=torch.int64)
    group.broadcast(want).wait()
    if rank != 0:
        got = torch.tensor(_signed(model_checksum(model.parameters())), dtype=torch.int64)
        if not torch.equal(got, want):
            raise AssertionError(f"{name}: rollout weights differ from the learner's after sync")
    row["gbps_sync"] = nbytes / row["sync_s"] / GB
    row["gbps_sync_no_checksum"] = nbytes / row["sync_no_checksum_s"] / GB
    row["gbps_raw"] = nbytes / raw_s / GB
    row["sync_vs_raw"] = raw_s / row["sync_s"]
    row["sync_no_checksum_vs_raw"] = raw_s / row["sync_no_checksum_s"]
    row["bound_sync_vs_raw"] = raw_s / (raw_s + row["copy_s"])  # the best a pack + unpack can do with no spare core
    del model
    return row


def worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(1)  # 2-3 processes share 2 cores; more threads only contend
    group = init_sync_group("127.0.0.1", port, rank, world, timeout_s=600)
    rows = []
    mb = 1 << 20
    # Transport: a model of args.transport_mb fp32 bytes, fp32 on both sides (no cast), at a few
    # bucket sizes.
    width = 1024
    layers = max(1, args.transport_mb * mb // (4 * (width * width + width)))
    for bucket_mb in args.bucket_mb:
        for depth in args.depth:
            rows.append(run_case(group, f"linear-{layers}x{width} fp32",
                                 lambda: linear_stack(layers, width, torch.float32, 0),
                                 lambda: linear_stack(layers, width, torch.float32, None),
                                 None, bucket_mb * mb, depth, args.reps))
    # The tiny Qwen2.5-VL model, fp32 end to end.
    from engine.model import build_tiny_model
    rows.append(run_case(group, "tiny Qwen2.5-VL fp32", lambda: build_tiny_model(seed=0)[0],
                         lambda: build_tiny_model(seed=1)[0], None, args.bucket_mb[-1] * mb,
                         args.depth[-1], args.reps))
    # ~1B parameters: fp32 learner, bf16 on the wire and in the rollout model.
    n, w = args.big_layers, BIG_WIDTH
    rows.append(run_case(group, f"linear-{n}x{w} ({n * (w * w + w) / 1e9:.2f}B params)",
                         lambda: linear_stack(n, w, torch.float32, 0),
                         lambda: linear_stack(n, w, torch.bfloat16, None),
                         torch.bfloat16, args.bucket_mb[-1] * mb, args.depth[-1],
                         args.big_reps))
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    group.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--receivers", type=int, default=1, help="rollout processes (+1 sender)")
    ap.add_argument("--transport-mb", type=int, default=512,
                    help="fp32 model size for the raw comparison")
    ap.add_argument("--bucket-mb", type=int, nargs="+", default=[2, 4, 64, 256, 16],
                    help="bucket sizes for the transport rows; the last one is used for the models")
    ap.add_argument("--depth", type=int, nargs="+", default=[2],
                    help="buckets in flight for the transport rows; the last one for the models")
    ap.add_argument("--target-params", type=float, default=1e9, help="size of the big model")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--big-reps", type=int, default=3)
    ap.add_argument("--device", default=f"cpu-{os.cpu_count()}core")
    args = ap.parse_args()

    avail = mem_available_bytes()
    big_width = BIG_WIDTH
    per_layer = big_width * big_width + big_width
    layers = max(1, round(args.target_params / per_layer))
    # Peak for the big case: the fp32 learner (4 B/param), a bf16 model per receiver
    # (2 B/param), the raw comparison's flat bf16 tensor on every process (2 B/param each) and
    # two buckets per process. Use at most half of what is available now: the machine is shared.
    def peak(n: int) -> int:
        p = n * per_layer
        models = 4 * p + 2 * p * args.receivers + 2 * p * (args.receivers + 1)
        return models + 2 * (args.receivers + 1) * (max(args.bucket_mb) << 20)
    while layers > 1 and peak(layers) > avail // 2:
        layers -= 1
    args.big_layers = layers
    print(f"memory available {avail / 2**30:.1f} GiB; big model {layers} x Linear({big_width}) = "
          f"{layers * per_layer / 1e9:.2f}B params (peak estimate {peak(layers) / 2**30:.1f} GiB)")

    world = args.receivers + 1
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/rows.json"
        t0 = time.perf_counter()
        mp.start_processes(worker, args=(world, free_port(), args, out), nprocs=world,
                           start_method="spawn")
        rows = json.loads(Path(out).read_text())
        wall = time.perf_counter() - t0

    print(f"\nweight sync, gloo, {world} processes (1 sender, {args.receivers} receivers), "
          f"median of {args.reps} (big: {args.big_reps})")
    print(f"{'case':34} {'wire':8} {'GB':>6} {'bucket':>7} {'depth':>5} {'raw GB/s':>9} "
          f"{'sync GB/s':>10} {'no-cksum':>9} {'sync/raw':>9} {'bound':>6} {'sync s':>8}")
    for r in rows:
        print(f"{r['case']:34} {r['wire_dtype']:8} {r['wire_bytes'] / GB:6.3f} "
              f"{r['bucket_bytes'] >> 20:5d}MB {r['depth']:5d} {r['gbps_raw']:9.2f} "
              f"{r['gbps_sync']:10.2f} {r['gbps_sync_no_checksum']:9.2f} "
              f"{r['sync_vs_raw']:9.2f} {r['bound_sync_vs_raw']:6.2f} {r['sync_s']:8.3f}")
    result = dict(
        device=args.device, bench="sync", backend="gloo", cpu=platform.machine(),
        cpu_count=os.cpu_count(), torch=torch.__version__, processes=world,
        receivers=args.receivers, mem_available_gib=avail / 2**30,
        # the machine is shared: a 1-minute load average above the core count means the
        # processes here competed with others for CPU, which hurts the sync (more CPU work
        # per byte) more than the raw broadcast
        load_avg_1m=dict(before=load_before, after=os.getloadavg()[0]),
        big_model_params=args.big_layers * per_layer, threads_per_process=1,
        wall_s=wall, note=("GB/s = wire bytes / seconds, barrier to barrier, slowest rank; "
                           "sync = pack+checksum+broadcast+verify+copy into the rollout model"),
        rows=rows)
    path = Path(__file__).resolve().parent / "results" / f"sync-{args.device}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
