"""`vthink make-data`: command-line front end of the synthetic dataset generator (also `python -m engine.data.make_data`)."""
from __future__ import annotations

import argparse
import sys

from engine.data.synthetic import CODECS, make_dataset
from engine.errors import VthinkError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `make-data`, for the main CLI to mount on its sub-command parser."""
    parser.add_argument("out_dir", help="dataset directory (created; files of the same names are overwritten)")
    parser.add_argument("--num-videos", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codec", choices=sorted(CODECS), default="h264")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per video")
    parser.add_argument("--eval-fraction", type=float, default=0.25)
    parser.add_argument("--quiet", action="store_true", help="no per-video progress lines")


def run(args: argparse.Namespace) -> int:
    try:
        paths = make_dataset(args.out_dir, num_videos=args.num_videos, seed=args.seed, codec=args.codec,
                             width=args.width, height=args.height, fps=args.fps, duration_s=args.duration,
                             eval_fraction=args.eval_fraction, verbose=not args.quiet)
    except VthinkError as e:
        print(f"make-data: error: {e}", file=sys.stderr)
        return 2
    print(f"make-data: wrote {paths.videos_jsonl}, {paths.train_jsonl}, {paths.eval_jsonl}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vthink make-data", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
