"""PyAV (FFmpeg) CPU decoding of chosen frames, seeking to the keyframe before each run."""
from __future__ import annotations

import numpy as np

import av

from engine.errors import VideoDecodeError
from engine.video.plan import plan_runs
from engine.video.probe import open_container, video_stream
from engine.video.types import VideoMeta


def decode_pyav(path: str, meta: VideoMeta, indices: list[int],
                keep_all: bool = False) -> tuple[dict[int, np.ndarray], int]:
    """Decode frames `indices` of `path` -> ({index: uint8 [H, W, 3] RGB}, frames actually decoded).

    Frames are identified by their pts (from the probe), so seeking lands exactly and B-frame
    reordering cannot shift numbers. Only the runs planned from the keyframe table are decoded.
    keep_all decodes whole GOPs and returns every frame decoded, for the cache.
    """
    index_of = {p: i for i, p in enumerate(meta.frame_pts)}
    out: dict[int, np.ndarray] = {}
    decoded = 0
    with open_container(path) as container:
        stream = video_stream(container, path)
        stream.thread_type = "AUTO"
        for run in plan_runs(indices, meta.keyframes, meta.num_frames if keep_all else None):
            wanted = set(range(run.start, run.stop + 1)) if keep_all else set(run.wanted)
            decoded += _decode_run(container, stream, meta, run.start, run.stop, wanted, index_of, out, path,
                                   required=set(run.wanted))
    missing = sorted(set(indices) - out.keys())
    if missing:
        raise VideoDecodeError(f"{path}: frames {missing[:8]}{'...' if len(missing) > 8 else ''} could not be "
                               f"decoded (of {meta.num_frames}; file truncated or corrupt?)")
    return out, decoded


def _decode_run(container, stream, meta: VideoMeta, start: int, stop: int, wanted: set[int],
                index_of: dict[int, int], out: dict[int, np.ndarray], path: str, required: set[int]) -> int:
    decoded = 0
    for attempt in range(2):
        # First try: seek to the run's keyframe. If the demuxer lands after it (imprecise index),
        # fall back to decoding from the start of the stream.
        target_pts = meta.frame_pts[start] if attempt == 0 else meta.frame_pts[0]
        try:
            container.seek(target_pts, backward=True, any_frame=False, stream=stream)
        except av.FFmpegError as e:
            raise VideoDecodeError(f"{path}: seek to frame {start} failed ({e})") from None
        landed_late = False
        try:
            for frame in container.decode(stream):
                decoded += 1
                idx = index_of.get(frame.pts) if frame.pts is not None else None
                if idx is None:
                    continue  # a frame we cannot place (no pts / not in the index): never guess
                if attempt == 0 and decoded == 1 and idx > min(required):
                    landed_late = True
                    break
                if idx in wanted and idx not in out:
                    out[idx] = frame.to_ndarray(format="rgb24")
                if idx >= stop:
                    break
        except av.FFmpegError as e:
            if not required - out.keys():
                return decoded
            raise VideoDecodeError(f"{path}: decoding failed near frame {start}..{stop} ({e})") from None
        if not landed_late:
            return decoded
    return decoded
