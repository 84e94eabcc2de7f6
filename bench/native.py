"""Benchmark csrc/ hot paths: M-RoPE ids vs transformers' get_rope_index, partitioning vs pure Python.

transformers 5.x's get_rope_index places text after a video by another rule than the original one vthink
implements (engine/native.py), so it is timed as the baseline of the same work, and the C++ ids are
checked against the pure-Python ones (both tested against the original rule in tests/native).

Writes bench/results/native-<device>.json and prints a table. Run: `python bench/native.py`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import transformers
from transformers import Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

from engine import native

SMS, TPS = 2, 2  # Qwen2.5-VL's spatial_merge_size and tokens_per_second


def timed(fn: Callable[[], Any], min_time: float, max_runs: int = 200) -> tuple[float, Any]:
    """(median seconds per call, first result) over repeated calls lasting about `min_time` in total:
    at least 3 timed calls after a warm-up, or just the first call when it alone takes longer."""
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    if first > min_time:
        return first, result
    runs: list[float] = []
    while len(runs) < 3 or (sum(runs) < min_time and len(runs) < max_runs):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), result


def tiny_model() -> Qwen2_5_VLModel:
    """get_rope_index does not depend on model size: a tiny Qwen2.5-VL with the real vision config values."""
    cfg = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, vocab_size=64, bos_token_id=0, eos_token_id=1,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}),
        vision_config=dict(depth=1, hidden_size=16, num_heads=2, intermediate_size=32, out_hidden_size=16,
                           spatial_merge_size=SMS, tokens_per_second=TPS))
    return Qwen2_5_VLModel(cfg).eval()


def agent_batch(tokens: int, n_videos: int, batch: int, seed: int) -> dict[str, torch.Tensor]:
    """Rows of `tokens` tokens: a prompt video plus tool-observation videos (own grids and seconds),
    an image every third segment, text between, a little left padding on every other row."""
    rng = np.random.default_rng(seed)
    rows, images, videos, seconds = [], [], [], []
    for _ in range(batch):
        row: list[int] = []
        budget = int(tokens * 0.85) // n_videos  # ~85% visual tokens, as in video reasoning prompts
        for v in range(n_videos):
            row += [0] * int(rng.integers(20, 60))
            if v % 3 == 1:
                images.append([1, 8 * SMS, 6 * SMS])
                row += [1] * 48 + [0] * 8
            hw = int(rng.integers(6, 13)) * SMS
            t = max(1, budget // ((hw // SMS) ** 2))
            videos.append([t, hw, hw])
            seconds.append(float(rng.choice([0.5, 1.0, 2.0, 0.25, 1 / 3])))
            row += [2] * (t * (hw // SMS) ** 2)
        row += [0] * max(1, tokens - len(row))
        rows.append(row)
    L = max(map(len, rows)) + 16
    types = torch.zeros(len(rows), L, dtype=torch.long)
    mask = torch.zeros(len(rows), L, dtype=torch.long)
    for b, row in enumerate(rows):
        off = (L - len(row)) if b % 2 else 0
        types[b, off:off + len(row)] = torch.tensor(row)
        mask[b, off:off + len(row)] = 1
    ids = torch.randint(0, 59, types.shape)
    return dict(input_ids=ids, mm_token_type_ids=types, image_grid_thw=torch.tensor(images).reshape(-1, 3),
                video_grid_thw=torch.tensor(videos), second_per_grid_ts=torch.tensor(seconds), attention_mask=mask)


def bench_mrope(min_time: float) -> list[dict[str, Any]]:
    model = tiny_model()
    out = []
    for tokens, batch in ((4096, 1), (32768, 1), (4096, 8)):
        inputs = agent_batch(tokens, 8, batch, seed=tokens + batch)
        cfg = dict(spatial_merge_size=SMS, tokens_per_second=TPS)
        # torch's intra-op threads make get_rope_index's small tensor ops much slower on a busy 2-core
        # machine; time it with the default thread count and with one thread, and compare against the faster.
        threads = torch.get_num_threads()
        t_hf_default, want = timed(lambda: model.get_rope_index(**inputs), min_time)
        torch.set_num_threads(1)
        try:
            t_hf_1, _ = timed(lambda: model.get_rope_index(**inputs), min_time)
        finally:
            torch.set_num_threads(threads)
        t_hf = min(t_hf_default, t_hf_1)
        t_nat, got_nat = timed(lambda: native.mrope_position_ids(**inputs, **cfg), min_time)
        t_py, got_py = timed(lambda: native.mrope_position_ids_py(**inputs, **cfg), min_time)
        assert all(torch.equal(g, w) for g, w in zip(got_nat, got_py)), "native and Python M-RoPE ids differ"
        assert want[0].shape == got_nat[0].shape
        out.append(dict(tokens_per_row=tokens, batch=batch, seq_len=inputs["input_ids"].shape[1], video_segments=8,
                        images=int(inputs["image_grid_thw"].shape[0]), transformers_ms=t_hf * 1e3,
                        transformers_ms_default_threads=t_hf_default * 1e3, transformers_ms_1_thread=t_hf_1 * 1e3,
                        torch_default_threads=threads,
                        native_ms=t_nat * 1e3, python_ms=t_py * 1e3, speedup_native_vs_transformers=t_hf / t_nat,
                        speedup_python_vs_transformers=t_hf / t_py))
    return out


def bench_partition(min_time: float, sizes: list[int]) -> list[dict[str, Any]]:
    out = []
    k, budget = 8, 65536
    for n in sizes:
        # Text plus visual tokens per sample: log-normal around ~3k, clipped to the context length.
        lengths = np.clip(np.random.default_rng(n).lognormal(8.0, 0.8, n), 64, 32768).astype(np.int64)
        contiguous = [c.tolist() for c in np.array_split(np.arange(n), k)]
        cases = [
            ("karmarkar_karp", lambda f: f(lengths, k), native.balanced_partition, native.balanced_partition_py),
            ("karmarkar_karp_equal_size", lambda f: f(lengths, k, True), native.balanced_partition,
             native.balanced_partition_py),
            ("pack_by_budget_ffd", lambda f: f(lengths, budget), native.pack_by_budget, native.pack_by_budget_py),
        ]
        for name, call, fast, slow in cases:
            t_nat, res_nat = timed(lambda: call(fast), min_time)
            t_py, res_py = timed(lambda: call(slow), min_time)
            assert res_nat == res_py, f"{name}: native and Python results differ"
            row = dict(algo=name, n=n, native_ms=t_nat * 1e3, python_ms=t_py * 1e3)
            row["speedup"] = row["python_ms"] / row["native_ms"]
            if name.startswith("karmarkar"):
                row.update(k=k, load_ratio_max_over_min=native.load_ratio(lengths, res_nat),
                           contiguous_split_load_ratio=native.load_ratio(lengths, contiguous))
            else:
                loads = [int(lengths[b].sum()) for b in res_nat]
                row.update(max_tokens=budget, bins=len(res_nat), lower_bound_bins=int(-(-int(lengths.sum()) // budget)),
                           load_ratio_max_over_min=max(loads) / min(loads))
            out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default=f"cpu-{os.cpu_count()}core", help="device name used in the JSON file name")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds of repeated calls per measurement")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000], help="partitioning input sizes")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    if native.BACKEND != "native":
        raise SystemExit("engine._native is not built: run `python setup.py build_ext --inplace` first")

    mrope = bench_mrope(args.min_time)
    part = bench_partition(args.min_time, args.sizes)

    print(f"\nM-RoPE position ids, 8 video segments ({args.device}, transformers {transformers.__version__})")
    print("(transformers: the faster of torch's default thread count and 1 thread; both are in the JSON)")
    print(f"{'tokens/row':>10} {'batch':>5} {'transformers ms':>16} {'python ms':>10} {'native ms':>10} {'native x':>9}")
    for r in mrope:
        print(f"{r['tokens_per_row']:>10} {r['batch']:>5} {r['transformers_ms']:>16.3f} {r['python_ms']:>10.3f} "
              f"{r['native_ms']:>10.4f} {r['speedup_native_vs_transformers']:>8.1f}x")
    print(f"\nPartitioning (k = 8 / max_tokens = 65536)")
    print(f"{'algorithm':>26} {'n':>9} {'python ms':>11} {'native ms':>10} {'speedup':>8} {'max/min load':>13}")
    for r in part:
        print(f"{r['algo']:>26} {r['n']:>9} {r['python_ms']:>11.1f} {r['native_ms']:>10.2f} {r['speedup']:>7.1f}x "
              f"{r['load_ratio_max_over_min']:>13.6f}")

    result = dict(device=args.device, backend=native.BACKEND, cpu=platform.processor() or platform.machine(),
                  cpu_count=os.cpu_count(), torch=torch.__version__, transformers=transformers.__version__,
                  numpy=np.__version__, mrope=mrope, partition=part)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"native-{args.device}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
