"""The video service's value types: what a probe says about a file and what a sample returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import torch


@dataclass(frozen=True)
class VideoMeta:
    """What `VideoService.probe` learns from the container without decoding a frame.

    `frame_times_s[i]` is the presentation time of frame i (presentation order), measured from the
    first frame, so frame 0 is at 0.0. `keyframes` are the frame indices a decoder can start from.
    """

    path: str
    duration_s: float
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str
    frame_times_s: tuple[float, ...] = field(repr=False, default=())
    keyframes: tuple[int, ...] = field(repr=False, default=())
    frame_pts: tuple[int, ...] = field(repr=False, default=())  # raw pts per frame, for seeking
    time_base: Fraction = field(repr=False, default=Fraction(1, 1))


@dataclass
class Clip:
    """Frames chosen by a `FramePolicy`, with the tensors the policy model takes (its service's VisionSpec).

    frames: uint8 [T, H, W, 3] at source resolution (the crop region for `crop`), on the service's
        device; the model sees them resized to `resized_hw` inside `pixel_values`.
    frame_indices: int64 [T] source frame numbers (presentation order), on CPU.
    timestamps_s: float64 [T] real presentation times of those frames, on CPU.
    pixel_values: float32 [t*h*w, 3*2*p*p] patches (p = 14 for Qwen2.5-VL, 16 for Qwen3-VL), on the service's device.
    grid_thw: (t, h, w) in patch units; t = ceil(T / 2) (an odd T repeats its last frame).
    second_per_grid_t: real seconds between consecutive temporal grid steps.
    start_s / end_s: the time span actually served (after any clamping).
    notes: human-readable statements of every adjustment made to the request (clamping...).
    """

    path: str
    frames: torch.Tensor
    frame_indices: torch.Tensor
    timestamps_s: torch.Tensor
    pixel_values: torch.Tensor
    grid_thw: tuple[int, int, int]
    second_per_grid_t: float
    resized_hw: tuple[int, int]
    start_s: float
    end_s: float
    backend: str
    bbox: tuple[float, float, float, float] | None = None
    notes: tuple[str, ...] = ()
    cache_hits: int = 0
    cache_misses: int = 0
    key: tuple | None = None  # what was decoded: (file identity, frame indices, crop, resized size)

    @property
    def num_frames(self) -> int:
        return int(self.frame_indices.numel())


@dataclass
class VideoInput:
    """One video segment as the model consumes it (patches of the policy's VisionSpec)."""

    pixel_values: torch.Tensor  # [t*h*w, 3*2*p*p]
    grid_thw: tuple[int, int, int]
    second_per_grid_t: float
    start_s: float = 0.0  # the span of the source video it shows (tool observations: the requested one)
    end_s: float = 0.0
    frame_times_s: tuple[float, ...] = ()  # each frame's time in the source video (traces show them)
    key: tuple | None = None  # Clip.key: equal keys, equal pixels (caches key on it instead of hashing pixels)
