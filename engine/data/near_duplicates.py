"""Held-out clips that are near-duplicates of a training clip, judged on decoded pixels (never names or hashes).

A clip's signature is a few frames at fixed fractions of its length, decoded and box-downsampled to a
thumbnail; two clips are near-duplicates when the mean absolute difference of their signatures (0-255
scale) is under `threshold`. Re-encodes, invisible noise and renamed copies stay under it; clips with
different content (another texture, another scene) are far above it (about 20-40 for the glimpse task).
"""
from __future__ import annotations

import os
from typing import Iterable

import av
import numpy as np

from engine.errors import VideoDecodeError

FRACTIONS = (0.1, 0.35, 0.6, 0.85)
THUMB = (12, 16)  # rows, columns
THRESHOLD = 6.0


def _thumb(rgb: np.ndarray) -> np.ndarray:
    """Box-average an [H, W, 3] frame down to THUMB (crops the remainder rows/columns)."""
    h, w = rgb.shape[:2]
    th, tw = THUMB
    bh, bw = max(1, h // th), max(1, w // tw)
    x = rgb[: bh * th, : bw * tw].astype(np.float32)
    return x.reshape(th, bh, tw, bw, 3).mean(axis=(1, 3))


def signature(path: str | os.PathLike) -> np.ndarray:
    """[len(FRACTIONS), *THUMB, 3] float32 thumbnails of the frames at FRACTIONS of the clip's duration (each
    reached by a seek to the keyframe before it, so only a few frames are decoded)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.duration is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                raise VideoDecodeError(f"{path}: the container states no duration")
            picks = [_frame_at(container, stream, f * duration) for f in FRACTIONS]
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise VideoDecodeError(f"{path}: cannot decode for the near-duplicate check: {e}") from None
    return np.stack([_thumb(p) for p in picks])


def _frame_at(container, stream, t: float) -> np.ndarray:
    """The first frame shown at or after t seconds (the last one when t is past the end)."""
    container.seek(int(t / stream.time_base), stream=stream, backward=True)
    last = None
    for frame in container.decode(stream):
        last = frame
        if frame.time is not None and frame.time >= t - 1e-3:
            break
    if last is None:
        raise VideoDecodeError(f"no frame decoded near {t:.2f} s")
    return last.to_ndarray(format="rgb24")


def nearest_distance(eval_sigs: np.ndarray, train_sigs: np.ndarray) -> np.ndarray:
    """For each held-out signature, the mean absolute difference to its closest training signature."""
    if len(train_sigs) == 0:
        return np.full(len(eval_sigs), np.inf, dtype=np.float32)
    train = train_sigs.reshape(len(train_sigs), -1)
    out = np.empty(len(eval_sigs), dtype=np.float32)
    for i, e in enumerate(eval_sigs.reshape(len(eval_sigs), -1)):
        out[i] = np.abs(train - e).mean(axis=1).min()
    return out


def near_duplicates(eval_videos: Iterable[str | os.PathLike], train_videos: Iterable[str | os.PathLike],
                    threshold: float = THRESHOLD) -> list[str]:
    """The held-out videos (each path once) whose pixels nearly equal some training video's."""
    eval_videos = sorted({str(p) for p in eval_videos})
    train_videos = sorted({str(p) for p in train_videos})
    if not eval_videos:
        return []
    train = np.stack([signature(p) for p in train_videos]) if train_videos else np.zeros((0, len(FRACTIONS), *THUMB, 3))
    dist = nearest_distance(np.stack([signature(p) for p in eval_videos]), train)
    return [p for p, d in zip(eval_videos, dist) if d < threshold]


def split_overlap(data) -> dict:
    """What `vthink data check` and `vthink demo` report about a Data's splits: clips and near-duplicates."""
    train = {str(r.video) for r in data.train}
    held = {str(r.video) for r in data.eval}
    return {"train_clips": len(train), "eval_clips": len(held),
            "eval_clips_identical_to_train": len(near_duplicates(held, train))}
