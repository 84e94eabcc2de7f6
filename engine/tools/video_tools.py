"""The video tools: frame_zoom (dense frames of a time window) and spatial_zoom (a region of one frame)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from engine.errors import ConfigError, ToolCallError
from engine.tools.registry import Observation, Tool, ToolContext, arg_int, arg_time
from engine.tools.timefmt import format_time
from engine.video import FramePolicy

# frame_zoom's num_frames is clamped to this (and rounded down to an even count: frames enter the
# model in temporal pairs). 32 frames at the default 128*28*28 pixels is ~4k vision tokens.
MAX_ZOOM_FRAMES = 32

_TIME_DOC = "seconds (e.g. 3.5) or an 'MM:SS' string"


@dataclass(frozen=True)
class FrameZoomArgs:
    start_s: float
    end_s: float
    num_frames: int | None = None


@dataclass(frozen=True)
class SpatialZoomArgs:
    time_s: float
    bbox: tuple[float, float, float, float]


def frame_times(clip, digits: int = 2) -> str:
    return ", ".join(format_time(float(t), digits) for t in clip.timestamps_s.tolist())


def _with_notes(text: str, notes) -> str:
    notes = [n for n in notes if n]
    return text + ("" if not notes else " Notes: " + "; ".join(notes) + ".")


class FrameZoomTool(Tool):
    name = "frame_zoom"
    description = ("Look again, more densely, at a time window of the video: returns frames sampled only "
                   "from [start, end], each with its real timestamp.")

    def __init__(self, max_frames: int = MAX_ZOOM_FRAMES):
        if max_frames < 2:
            raise ConfigError("rollout.max_zoom_frames", f"must be >= 2, got {max_frames}")
        self.max_frames = max_frames - max_frames % 2
        self.parameters = {  # states this instance's limit (rollout.max_zoom_frames), which the model must respect
            "type": "object",
            "properties": {
                "start": {"type": ["number", "string"], "description": f"window start: {_TIME_DOC}"},
                "end": {"type": ["number", "string"], "description": f"window end: {_TIME_DOC}"},
                "num_frames": {"type": "integer", "description": f"frames to return (even, at most {self.max_frames}); "
                                                                 "default: the frame policy's count"},
            },
            "required": ["start", "end"],
        }

    def convert(self, arguments: dict) -> FrameZoomArgs:
        start = arg_time(self.name, arguments, "start")
        end = arg_time(self.name, arguments, "end")
        if end <= start:
            raise ToolCallError(f"frame_zoom: the window is empty or inverted: end ({format_time(end)}) must be "
                                f"after start ({format_time(start)})")
        num_frames = arg_int(self.name, arguments, "num_frames")
        if num_frames is not None and num_frames < 1:
            raise ToolCallError(f"frame_zoom: argument 'num_frames' must be >= 1, got {num_frames}")
        return FrameZoomArgs(start, end, num_frames)

    def run(self, args: FrameZoomArgs, ctx: ToolContext) -> Observation:
        duration = ctx.duration_s
        if duration and duration > 0:
            if args.start_s >= duration:
                raise ToolCallError(f"frame_zoom: start {format_time(args.start_s)} is at or past the end of the "
                                    f"video (it lasts {format_time(duration)})")
            if args.end_s <= 0:
                raise ToolCallError(f"frame_zoom: the window ends at {format_time(args.end_s)}, before the video starts")
        policy, notes = ctx.frame_policy or FramePolicy(), []
        if args.num_frames is not None:
            n = min(args.num_frames, self.max_frames)
            if n < args.num_frames:
                notes.append(f"num_frames {args.num_frames} clamped to the maximum {self.max_frames} "
                             "(rollout.max_zoom_frames)")
            even = max(2, n - n % 2)
            if even != n:
                notes.append(f"num_frames {n} set to {even} (frames are taken in pairs)")
            policy = replace(policy, min_frames=even, max_frames=even)
        clip = ctx.video_service.window(ctx.video_path, args.start_s, args.end_s, policy)
        if args.num_frames is not None and clip.num_frames < policy.max_frames:
            notes.append(f"the window holds only {clip.num_frames} frame(s)")
        text = (f"frame_zoom: frames {format_time(clip.start_s)}-{format_time(clip.end_s)}, {clip.num_frames} "
                f"frame{'s' if clip.num_frames != 1 else ''} at {frame_times(clip)}.")
        return Observation(_with_notes(text, [*clip.notes, *notes]), [clip])


class SpatialZoomTool(Tool):
    name = "spatial_zoom"
    description = ("Zoom into a region of the frame shown at one moment: returns that crop at higher "
                   "resolution. bbox = [x0, y0, x1, y1] as fractions (0..1) of the frame's width and height.")
    parameters = {
        "type": "object",
        "properties": {
            "time": {"type": ["number", "string"], "description": f"the moment: {_TIME_DOC}"},
            "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                     "description": "[x0, y0, x1, y1], fractions 0..1 of width and height, x0 < x1, y0 < y1"},
        },
        "required": ["time", "bbox"],
    }

    def convert(self, arguments: dict) -> SpatialZoomArgs:
        time_s = arg_time(self.name, arguments, "time")
        try:
            box = tuple(float(v) for v in arguments["bbox"])
        except (OverflowError, TypeError, ValueError):
            raise ToolCallError("spatial_zoom: argument 'bbox' must be 4 numbers [x0, y0, x1, y1]") from None
        if not all(math.isfinite(v) for v in box):
            raise ToolCallError(f"spatial_zoom: argument 'bbox' must be 4 finite numbers, got {list(box)}")
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            raise ToolCallError(f"spatial_zoom: bbox {list(box)} is empty or inverted (need x0 < x1 and y0 < y1)")
        if x1 <= 0 or y1 <= 0 or x0 >= 1 or y0 >= 1:
            raise ToolCallError(f"spatial_zoom: bbox {list(box)} lies outside the frame; coordinates are fractions "
                                "0..1 of the frame's width and height")
        return SpatialZoomArgs(time_s, box)

    def run(self, args: SpatialZoomArgs, ctx: ToolContext) -> Observation:
        duration = ctx.duration_s
        if args.time_s < 0 or (duration and duration > 0 and args.time_s > duration):
            raise ToolCallError(f"spatial_zoom: time {format_time(args.time_s)} is outside the video "
                                f"[00:00.0, {format_time(duration)}]")
        clip = ctx.video_service.crop(ctx.video_path, args.time_s, args.bbox, ctx.frame_policy or FramePolicy())
        x0, y0, x1, y1 = clip.bbox
        height, width = clip.frames.shape[1], clip.frames.shape[2]
        text = (f"spatial_zoom: region x {x0:.2f}-{x1:.2f}, y {y0:.2f}-{y1:.2f} of the frame at "
                f"{format_time(float(clip.timestamps_s[0]), 2)} ({width}x{height} source pixels).")
        return Observation(_with_notes(text, clip.notes), [clip])
