"""Time to generate a synthetic dataset (render + encode + JSONL) of N videos per codec; prints a table and
writes bench/results/make_data-<device>.json."""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import av

from engine.data.synthetic import CODECS, make_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num-videos", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--fps", type=float, default=8.0)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--device", default="cpu-2core", help="label for the results file")
    args = ap.parse_args()

    rows = []
    for codec in sorted(CODECS):
        times, size = [], 0
        for r in range(args.repeats):
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                paths = make_dataset(d, num_videos=args.num_videos, seed=r, codec=codec, width=args.width,
                                     height=args.height, fps=args.fps, duration_s=args.duration)
                times.append(time.perf_counter() - t0)
                size = sum(p.stat().st_size for p in (paths.dir / "videos").iterdir())
        frames = args.num_videos * round(args.duration * args.fps)
        med = statistics.median(times)
        rows.append({"codec": codec, "encoder": CODECS[codec].encoder, "num_videos": args.num_videos,
                     "frames": frames, "median_s": med, "min_s": min(times), "max_s": max(times),
                     "frames_per_s": frames / med, "bytes_per_video": size / args.num_videos})

    print(f"make_dataset: {args.num_videos} videos x {args.duration:g} s at {args.fps:g} fps, "
          f"{args.width}x{args.height}, median of {args.repeats}")
    print(f"{'codec':<7} {'encoder':<11} {'median s':>9} {'min s':>7} {'max s':>7} {'frames/s':>9} {'KiB/video':>10}")
    for r in rows:
        print(f"{r['codec']:<7} {r['encoder']:<11} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['max_s']:>7.3f} "
              f"{r['frames_per_s']:>9.0f} {r['bytes_per_video'] / 1024:>10.1f}")
    out = Path(__file__).parent / "results" / f"make_data-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "make_data", "device": args.device, "args": vars(args),
                               "av": av.__version__, "python": platform.python_version(), "results": rows},
                              indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
