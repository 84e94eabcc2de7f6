"""Qwen2.5-VL frame policy: how many frames to take, which ones, and the size to resize them to."""
from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import VideoRequestError

PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
FACTOR = PATCH_SIZE * MERGE_SIZE  # sides are multiples of 28
MAX_ASPECT = 200  # Qwen2-VL's smart_resize refuses anything flatter


@dataclass(frozen=True)
class FramePolicy:
    """Qwen2.5-VL video sampling (qwen-vl-utils semantics).

    fps: frames sampled per second of video, then bounded to [min_frames, max_frames], to the frames
        available and rounded down to an even count (temporal patch 2). A span holding a single
        frame yields one frame (the patchifier repeats it).
    max_pixels: per-frame pixel cap after resizing; sides are multiples of 28, aspect kept.
    min_pixels: per-frame floor (small crops are scaled up to it).
    total_pixels: optional budget for the whole clip; each frame then gets at most
        total_pixels / T * 2 pixels but never less than 1.05 * min_pixels (qwen-vl-utils rule).
    """

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 16
    max_pixels: int = 128 * 28 * 28
    total_pixels: int | None = None
    min_pixels: int = 4 * 28 * 28

    def __post_init__(self):
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise VideoRequestError(f"FramePolicy.fps must be a positive finite number, got {self.fps!r}")
        if not (isinstance(self.min_frames, int) and self.min_frames >= 1):
            raise VideoRequestError(f"FramePolicy.min_frames must be an int >= 1, got {self.min_frames!r}")
        if not (isinstance(self.max_frames, int) and self.max_frames >= 2):
            raise VideoRequestError(f"FramePolicy.max_frames must be an int >= 2, got {self.max_frames!r}")
        if self.min_frames > self.max_frames:
            raise VideoRequestError(
                f"FramePolicy.min_frames ({self.min_frames}) exceeds max_frames ({self.max_frames})")
        if not (isinstance(self.min_pixels, int) and self.min_pixels >= FACTOR * FACTOR):
            raise VideoRequestError(f"FramePolicy.min_pixels must be an int >= {FACTOR * FACTOR}, got {self.min_pixels!r}")
        if not (isinstance(self.max_pixels, int) and self.max_pixels >= self.min_pixels):
            raise VideoRequestError(
                f"FramePolicy.max_pixels must be an int >= min_pixels ({self.min_pixels}), got {self.max_pixels!r}")
        if self.total_pixels is not None and not (isinstance(self.total_pixels, int) and self.total_pixels > 0):
            raise VideoRequestError(f"FramePolicy.total_pixels must be a positive int or None, got {self.total_pixels!r}")


def _floor_even(x: float) -> int:
    return int(math.floor(x / TEMPORAL_PATCH_SIZE)) * TEMPORAL_PATCH_SIZE


def frame_count(available: int, video_fps: float, policy: FramePolicy) -> int:
    """How many of `available` consecutive frames (at `video_fps`) the policy samples."""
    if available <= 1:
        return available
    min_frames = math.ceil(policy.min_frames / TEMPORAL_PATCH_SIZE) * TEMPORAL_PATCH_SIZE
    max_frames = _floor_even(min(policy.max_frames, available))
    wanted = available / video_fps * policy.fps
    n = _floor_even(min(max(wanted, min_frames), max_frames, available))
    return max(n, TEMPORAL_PATCH_SIZE)


def select_frames(first: int, last: int, video_fps: float, policy: FramePolicy) -> list[int]:
    """Frame indices sampled uniformly over [first, last] inclusive, both ends included."""
    available = last - first + 1
    n = frame_count(available, video_fps, policy)
    if n == 1:
        return [first]
    import torch  # here, not at the top: engine.config reads FramePolicy's defaults without paying for torch

    # Same rounding as qwen-vl-utils: linspace over the span, round half to even.
    offsets = torch.linspace(0, available - 1, n, dtype=torch.float64).round().long().tolist()
    return [first + o for o in offsets]


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = 56 * 56,
                 max_pixels: int = 14 * 14 * 4 * 1280) -> tuple[int, int]:
    """Qwen2-VL's smart_resize: sides multiples of `factor`, pixels within [min, max], aspect kept."""
    if min(height, width) <= 0:
        raise VideoRequestError(f"cannot resize a {height}x{width} image")
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise VideoRequestError(
            f"aspect ratio {max(height, width) / min(height, width):.1f} of a {height}x{width} image exceeds {MAX_ASPECT}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def frame_max_pixels(num_frames: int, policy: FramePolicy) -> int:
    """Per-frame pixel cap, with the clip-wide `total_pixels` budget shared as qwen-vl-utils does."""
    if policy.total_pixels is None:
        return policy.max_pixels
    share = policy.total_pixels / max(num_frames, 1) * TEMPORAL_PATCH_SIZE
    return int(max(min(policy.max_pixels, share), int(policy.min_pixels * 1.05)))


def target_size(height: int, width: int, num_frames: int, policy: FramePolicy, factor: int = FACTOR
                ) -> tuple[int, int]:
    """(H, W) every frame of a clip is resized to; sides multiples of `factor` (VisionSpec.factor: 28 for
    Qwen2.5-VL, 32 for Qwen3-VL)."""
    return smart_resize(height, width, factor, policy.min_pixels, frame_max_pixels(num_frames, policy))


def second_per_grid_t(timestamps_s: list[float], video_fps: float) -> float:
    """Real seconds between temporal grid steps: twice the mean spacing of the sampled frames."""
    if len(timestamps_s) >= 2:
        return TEMPORAL_PATCH_SIZE * (timestamps_s[-1] - timestamps_s[0]) / (len(timestamps_s) - 1)
    return TEMPORAL_PATCH_SIZE / video_fps
