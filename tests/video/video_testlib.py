"""Shared helpers for tests/video: synthetic clips whose frames carry their own index."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from engine.data.synthetic import expected_frame, plan_video, read_frame_index, render_video
from engine.data.schema import VideoRecord

EXT = {"h264": ".mp4", "vp9": ".webm", "mjpeg": ".avi"}


def make_clip(out_dir: Path, codec: str, width: int = 160, height: int = 120, fps: float = 8.0,
              num_frames: int = 64, seed: int = 0, name: str | None = None) -> VideoRecord:
    name = name or f"{codec}_{width}x{height}_{num_frames}"
    rec = plan_video(name, Path(out_dir) / f"{name}{EXT[codec]}", seed, 0, codec, width, height, fps, num_frames)
    render_video(rec)
    return rec


def frame_numbers(frames: torch.Tensor) -> list[int]:
    """The index each decoded frame says it is (from its pixels)."""
    return [read_frame_index(f.cpu().numpy()) for f in frames]


def mean_abs_error(frame: torch.Tensor, record: VideoRecord, index: int) -> float:
    ref = expected_frame(record, index).astype(np.float32)
    return float(np.abs(frame.cpu().numpy().astype(np.float32) - ref).mean())


def qwen_indices(first: int, last: int, video_fps: float, fps: float, min_frames: int, max_frames: int) -> list[int]:
    """qwen-vl-utils' smart_nframes + linspace sampling, written out independently of engine.video."""
    total = last - first + 1
    if total == 1:
        return [first]
    lo = math.ceil(min_frames / 2) * 2
    hi = math.floor(min(max_frames, total) / 2) * 2
    n = total / video_fps * fps
    n = math.floor(min(max(n, lo), hi, total) / 2) * 2
    n = max(n, 2)
    return [first + int(v) for v in torch.linspace(0, total - 1, n, dtype=torch.float64).round().long()]
