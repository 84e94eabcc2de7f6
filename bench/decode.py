"""Benchmark video decoding: DALI vs PyAV (vs decord / torchcodec when installed) and the group cache.

For 640x480 and 1280x720 synthetic clips (H.264, VP9, MJPEG) it measures
  * decode_fps: frames/s decoding every frame of the clip (whole-video decode throughput),
  * sample_ms: one whole-video sample as the rollout does it (16 frames by the Qwen policy, decode only),
  * window16_ms: one 16-frame temporal window in the middle of the clip (decode only),
  * e2e_window16_ms: the same through VideoService (decode + resize + normalise + patchify), cache off,
and, for one GRPO group of G=8 samples each asking the whole video plus two overlapping tool
windows, the frames decoded and wall time with and without the cache vs one sample alone.
Writes bench/results/decode-<device>.json and prints a table. Run: `python bench/decode.py`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data.synthetic import plan_video, render_video  # noqa: E402
from engine.video import FramePolicy, VideoService  # noqa: E402
from engine.video.dali_backend import DALI_CPU_CODECS, DALI_GPU_CODECS, DaliDecoder, dali_unavailable_reason  # noqa: E402
from engine.video.plan import plan_runs  # noqa: E402
from engine.video.policy import select_frames  # noqa: E402
from engine.video.probe import probe  # noqa: E402
from engine.video.pyav_backend import decode_pyav  # noqa: E402

EXT = {"h264": ".mp4", "vp9": ".webm", "mjpeg": ".avi"}
SIZES = {"480p": (640, 480), "720p": (1280, 720)}
G = 8


def timed(fn: Callable[[], Any], min_time: float, max_runs: int = 50) -> float:
    """Median seconds per call after a warm-up call (at least 3 timed calls, about min_time in total)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first > 4 * min_time:
        return first
    runs: list[float] = []
    while len(runs) < 3 or (sum(runs) < min_time and len(runs) < max_runs):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0).replace(" ", "-")
    return f"cpu-{os.cpu_count()}core"


def decoders(codec: str) -> dict[str, Callable[[str, list[int]], Any]]:
    """name -> fn(path, indices) decoding exactly those frames."""
    out: dict[str, Callable] = {}
    metas: dict[str, Any] = {}

    def meta(path):
        if path not in metas:
            metas[path] = probe(path)
        return metas[path]

    out["pyav"] = lambda path, idx: decode_pyav(path, meta(path), idx)
    if dali_unavailable_reason() is None:
        if codec in DALI_CPU_CODECS:
            cpu = DaliDecoder("cpu", num_threads=max(1, (os.cpu_count() or 1)))
            out["dali-cpu"] = lambda path, idx: cpu.decode(path, idx, torch.device("cpu"))
        if torch.cuda.is_available() and codec in DALI_GPU_CODECS:
            gpu = DaliDecoder("mixed", device_id=0)

            def dali_gpu(path, idx):
                x = gpu.decode(path, idx, torch.device("cuda"))
                torch.cuda.synchronize()
                return x
            out["dali-mixed"] = dali_gpu
    try:
        decord = importlib.import_module("decord")

        def dec(path, idx):
            return decord.VideoReader(path, num_threads=0).get_batch(idx).asnumpy()
        out["decord"] = dec
    except Exception:
        pass
    try:
        tcd = importlib.import_module("torchcodec.decoders")

        def tc(path, idx):
            return tcd.VideoDecoder(path, seek_mode="exact").get_frames_at(indices=idx).data
        out["torchcodec"] = tc
    except Exception:
        pass
    return out


def group_requests(g: int, duration: float):
    a = duration * (0.1 + 0.04 * g)
    return [("sample",), ("window", a, a + duration * 0.3), ("window", duration * 0.5, duration * (0.75 + 0.02 * g))]


def serve(svc: VideoService, path: str, req, policy: FramePolicy):
    return svc.sample(path, policy) if req[0] == "sample" else svc.window(path, req[1], req[2], policy)


def group_bench(path: str, duration: float, backend: str, device: str) -> dict:
    policy = FramePolicy(fps=2.0, max_frames=16)
    out = {}
    for label, cache_bytes, samples in (("single", 2**30, 1), ("group_no_cache", 0, G), ("group_cache", 2**30, G)):
        svc = VideoService(device=device, backend=backend, cache_bytes=cache_bytes)
        svc.probe(path)
        t0 = time.perf_counter()
        for g in range(samples):
            for req in group_requests(g, duration):
                serve(svc, path, req, policy)
        if device == "cuda":
            torch.cuda.synchronize()
        s = svc.stats()
        out[label] = {"frames_decoded": s["frames_decoded"], "wall_s": time.perf_counter() - t0,
                      "hits": s["hits"], "misses": s["misses"], "cache_bytes": s["bytes"]}
    one = out["single"]["frames_decoded"]
    out["work_ratio_cache_vs_single"] = out["group_cache"]["frames_decoded"] / one
    out["work_ratio_no_cache_vs_single"] = out["group_no_cache"]["frames_decoded"] / one
    out["target_cache_le_1.5x_single"] = out["work_ratio_cache_vs_single"] <= 1.5
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=float, default=24.0)
    ap.add_argument("--codecs", default="h264,vp9,mjpeg")
    ap.add_argument("--sizes", default="480p,720p")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dev = device_name()
    torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict[str, Any] = {
        "device": dev, "cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
        "dali": None if dali_unavailable_reason() else importlib.import_module("nvidia.dali").__version__,
        "av": importlib.import_module("av").__version__, "seconds": args.seconds, "fps": args.fps,
        "not_installed": [m for m in ("decord", "torchcodec") if importlib.util.find_spec(m) is None],
        "clips": [],
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            w, h = SIZES[size]
            for codec in args.codecs.split(","):
                n = round(args.seconds * args.fps)
                path = Path(tmp) / f"{codec}_{size}{EXT[codec]}"
                t0 = time.perf_counter()
                render_video(plan_video(path.stem, path, 0, 0, codec, w, h, args.fps, n))
                enc_s = time.perf_counter() - t0
                meta = probe(str(path))
                every = list(range(meta.num_frames))
                sample_idx = select_frames(0, meta.num_frames - 1, meta.fps, FramePolicy(fps=2.0, max_frames=16))
                mid = meta.num_frames // 2
                window_idx = list(range(mid, mid + 16))
                entry: dict[str, Any] = {"codec": codec, "size": size, "width": w, "height": h,
                                         "frames": meta.num_frames, "keyframes": len(meta.keyframes),
                                         "encode_s": enc_s, "decoders": {}}
                for name, fn in decoders(codec).items():
                    p = str(path)
                    r = {
                        "decode_fps": meta.num_frames / timed(lambda: fn(p, every), args.min_time),
                        "sample_ms": 1e3 * timed(lambda: fn(p, sample_idx), args.min_time),
                        "window16_ms": 1e3 * timed(lambda: fn(p, window_idx), args.min_time),
                        "window16_frames_decoded": sum(x.stop - x.start + 1 for x in plan_runs(window_idx, meta.keyframes)),
                    }
                    if name in ("pyav", "dali-cpu", "dali-mixed"):
                        backend = "pyav" if name == "pyav" else "dali"
                        dev_for = "cuda" if name == "dali-mixed" else "cpu"
                        svc = VideoService(device=dev_for, backend=backend, cache_bytes=0)
                        start = mid / meta.fps
                        pol = FramePolicy(fps=meta.fps, max_frames=16)
                        r["e2e_window16_ms"] = 1e3 * timed(lambda: svc.window(p, start, start + 16 / meta.fps - 1e-3, pol), args.min_time)
                    entry["decoders"][name] = r
                    rows.append((size, codec, name, r))
                if "pyav" in entry["decoders"]:
                    base = entry["decoders"]["pyav"]["decode_fps"]
                    for name, r in entry["decoders"].items():
                        r["decode_fps_vs_pyav"] = r["decode_fps"] / base
                group_backend = "auto"
                entry["group"] = group_bench(str(path), meta.duration_s, group_backend, torch_device)
                entry["group"]["backend"] = VideoService(device=torch_device).backend_for(meta)
                results["clips"].append(entry)
                print(f"done {codec} {size} (encode {enc_s:.1f}s)", flush=True)
    if torch.cuda.is_available():
        h264 = next((c for c in results["clips"] if c["codec"] == "h264" and c["size"] == "720p"), None)
        if h264 and "dali-mixed" in h264["decoders"]:
            results["target_dali_ge_5x_pyav_h264_720p"] = h264["decoders"]["dali-mixed"]["decode_fps_vs_pyav"] >= 5
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / f"decode-{dev}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))

    print(f"\ndevice {dev}; clips {args.seconds:g}s at {args.fps:g} fps; keyframe every 2 s")
    print(f"{'size':5} {'codec':6} {'decoder':11} {'decode f/s':>10} {'vs pyav':>8} {'sample16 ms':>12} "
          f"{'window16 ms':>12} {'e2e win16 ms':>13}")
    for size, codec, name, r in rows:
        e2e = f"{r['e2e_window16_ms']:13.1f}" if "e2e_window16_ms" in r else f"{'-':>13}"
        print(f"{size:5} {codec:6} {name:11} {r['decode_fps']:10.1f} {r.get('decode_fps_vs_pyav', 1):8.2f} "
              f"{r['sample_ms']:12.1f} {r['window16_ms']:12.1f} {e2e}")
    print(f"\nG={G} group (whole video + 2 overlapping tool windows per sample), frames decoded:")
    print(f"{'size':5} {'codec':6} {'backend':10} {'single':>7} {'G no cache':>11} {'G cache':>8} {'cache/single':>13} "
          f"{'no-cache/single':>16} {'wall s: single':>15} {'G no cache':>11} {'G cache':>8}")
    for c in results["clips"]:
        g = c["group"]
        print(f"{c['size']:5} {c['codec']:6} {g['backend']:10} {g['single']['frames_decoded']:7d} "
              f"{g['group_no_cache']['frames_decoded']:11d} {g['group_cache']['frames_decoded']:8d} "
              f"{g['work_ratio_cache_vs_single']:13.2f} {g['work_ratio_no_cache_vs_single']:16.2f} "
              f"{g['single']['wall_s']:15.2f} {g['group_no_cache']['wall_s']:11.2f} {g['group_cache']['wall_s']:8.2f}")
    if results["not_installed"]:
        print(f"\nnot installed (skipped): {', '.join(results['not_installed'])}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
