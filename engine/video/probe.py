"""Probe a video file with PyAV: stream metadata and every frame's presentation time, no decoding."""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av

from engine.errors import VideoDecodeError
from engine.video.types import VideoMeta

MAX_SIDE = 16384  # larger than any real video; beyond this a header is lying or hostile
MAX_FRAME_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class FileId:
    """Identity of a file's content for caching: a rewritten file gets a new identity."""

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int


def file_id(path: str) -> FileId:
    """Stat `path`, raising VideoDecodeError naming the file when it is missing, a directory or empty."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VideoDecodeError(f"{path}: file not found") from None
    except OSError as e:
        raise VideoDecodeError(f"{path}: cannot stat ({e.strerror})") from None
    if not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise VideoDecodeError(f"{path}: file is empty (0 bytes)")
    return FileId(os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def open_container(path: str) -> av.container.InputContainer:
    """av.open with every failure turned into a VideoDecodeError naming the file."""
    try:
        return av.open(path, mode="r", metadata_errors="ignore")
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: not a readable video container ({e})") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise VideoDecodeError(f"{path}: cannot open ({e})") from None


def video_stream(container, path: str):
    """The first video stream, or VideoDecodeError."""
    streams = container.streams.video
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoDecodeError(f"{path}: no video stream (streams: {', '.join(kinds)})")
    return streams[0]


def probe(path: str) -> VideoMeta:
    """Read the container index of `path`: size, codec, fps, and per-frame times and keyframes.

    Demuxing every packet (no decoding) is what makes frame numbers exact for any container;
    it costs milliseconds even for long files.
    """
    file_id(path)
    with open_container(path) as container:
        stream = video_stream(container, path)
        codec, width, height = _header(stream, path)
        time_base = stream.time_base or Fraction(1, 1)
        pts: list[tuple[int, bool]] = []
        counter = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # flush packet
                # Packets without a pts (raw streams) get consecutive numbers: order is then decode order.
                p = packet.pts if packet.pts is not None else (packet.dts if packet.dts is not None else counter)
                pts.append((int(p), bool(packet.is_keyframe)))
                counter += 1
        except av.FFmpegError as e:
            if not pts:
                raise VideoDecodeError(f"{path}: cannot read packets ({e})") from None
            # A damaged tail still leaves the frames before it usable; decoding reports what is missing.
        if not pts:
            raise VideoDecodeError(f"{path}: video stream has zero frames")
        pts.sort(key=lambda x: x[0])
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        first = pts[0][0]
        times = tuple(float((p - first) * time_base) for p, _ in pts)
        if rate and float(rate) > 0:
            fps = float(rate)
        elif len(times) > 1 and times[-1] > 0:
            fps = (len(times) - 1) / times[-1]
        else:
            fps = 1.0
        _check_complete(path, container, stream, len(pts), times[-1] + 1.0 / fps, fps)
        keyframes = tuple(sorted({0} | {i for i, (_, k) in enumerate(pts) if k}))
        # Duration: the last frame is on screen for one frame period.
        duration = times[-1] + 1.0 / fps
        return VideoMeta(path=path, duration_s=duration, fps=fps, num_frames=len(pts), width=width,
                         height=height, codec=codec, frame_times_s=times, keyframes=keyframes,
                         frame_pts=tuple(p for p, _ in pts), time_base=Fraction(time_base))



def check_header(path: str) -> None:
    """Raise VideoDecodeError unless `path` is a file whose container header and video stream a decoder can
    read (codec, frame size): what `vthink data check` asks of every row's video, with no packet read."""
    file_id(path)
    with open_container(path) as container:
        _header(video_stream(container, path), path)


def _header(stream, path: str) -> tuple[str, int, int]:
    """(codec, width, height) of a video stream, or VideoDecodeError."""
    ctx = stream.codec_context
    if ctx is None or not ctx.name:
        tag = getattr(stream, "codec_tag", "") or "unknown"
        raise VideoDecodeError(f"{path}: unsupported video codec (tag {tag!r}: FFmpeg has no decoder for it)")
    codec = ctx.name
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width <= 0 or height <= 0:
        raise VideoDecodeError(f"{path}: video stream reports a {width}x{height} frame size")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_FRAME_PIXELS:
        raise VideoDecodeError(f"{path}: absurd frame size {width}x{height} (limit {MAX_SIDE} per side, "
                               f"{MAX_FRAME_PIXELS} pixels)")
    try:
        av.codec.Codec(codec, "r")
    except Exception:
        raise VideoDecodeError(f"{path}: unsupported video codec {codec!r} (no decoder available)") from None
    return codec, width, height


def _check_complete(path: str, container, stream, found: int, found_s: float, fps: float) -> None:
    """A file whose header promises more frames or time than its packets hold was cut short."""
    declared_frames = int(stream.frames or 0)
    if declared_frames > found:
        raise VideoDecodeError(f"{path}: truncated file: the header declares {declared_frames} frames, "
                               f"only {found} are present")
    declared_s = None
    if stream.duration and stream.time_base:
        declared_s = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:  # container duration may be audio's
        declared_s = container.duration / 1_000_000
    if declared_s is not None and found_s < declared_s - max(2.0 / fps, 0.1):
        raise VideoDecodeError(f"{path}: truncated file: the header declares {declared_s:.3f}s of video, "
                               f"only {found_s:.3f}s of frames are present")
