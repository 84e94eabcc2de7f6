"""Synthetic video tasks: coloured shapes that appear, move and change colour at known times, encoded with a
real encoder (PyAV), with per-segment captions and MCQ / temporal-grounding questions, deterministic from a seed.

Every frame is a pure function of its VideoRecord and index (`expected_frame`), so tests can compare decoded
pixels with what was rendered, and each frame carries its own index in a code strip (`read_frame_index`).
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from engine.data.frame_code import MAX_FRAME_INDEX, draw_frame_code, read_frame_index, strip_height
from engine.data.schema import DatasetError, Event, QARow, Segment, VideoRecord, format_span
from engine.errors import ConfigError

__all__ = [
    "BACKGROUND", "CODECS", "COLOURS", "POSITIONS", "SHAPES", "DatasetPaths", "ShapeState",
    "expected_frame", "iter_expected_frames", "make_dataset", "make_questions", "plan_video", "read_frame_index",
    "render_video", "scene_at",
]

# Saturated colours far apart in RGB so they survive YUV 4:2:0 compression and still name themselves.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "cyan": (40, 200, 215),
}
SHAPES = ("circle", "square", "triangle", "diamond")
POSITIONS: dict[str, float] = {"left": 0.2, "centre": 0.5, "right": 0.8}  # fraction of the width
NUM_LANES = 3  # each shape keeps its own horizontal lane, so shapes never overlap
MAX_OBJECTS = NUM_LANES
BACKGROUND = (32, 32, 32)
LETTERS = "ABCD"
TASKS = ("shapes", "flash", "glimpse")


@dataclass(frozen=True)
class CodecSpec:
    encoder: str  # FFmpeg encoder name
    ext: str  # container
    pix_fmt: str
    options: dict[str, str]


CODECS: dict[str, CodecSpec] = {
    # B-frames stay on (x264 default) so decoders face reordering, as with real footage. mbtree is off because
    # with it this libx264 build's output depends on memory contents beyond the frame (measured: 2 distinct
    # bitstreams in 40 encodes of identical frames at 160x120), which would break byte-for-byte determinism.
    "h264": CodecSpec("libx264", ".mp4", "yuv420p", {"crf": "18", "preset": "medium", "x264-params": "mbtree=0"}),
    "vp9": CodecSpec("libvpx-vp9", ".webm", "yuv420p",
                     {"crf": "24", "b": "0", "deadline": "good", "cpu-used": "5", "row-mt": "0"}),
    # The AVI muxer is the classic MJPEG container; quality is set with qmin/qmax (see _encode).
    "mjpeg": CodecSpec("mjpeg", ".avi", "yuvj420p", {}),
}


@dataclass(frozen=True)
class DatasetPaths:
    dir: Path
    videos_jsonl: Path
    train_jsonl: Path
    eval_jsonl: Path


@dataclass(frozen=True)
class ShapeState:
    """One visible shape at one instant, in pixels of the rendered frame."""

    object_id: int
    shape: str
    colour: str
    rgb: tuple[int, int, int]
    cx: float
    cy: float
    radius: float
    probe_xy: tuple[int, int]  # a pixel well inside the shape (>= radius/2 from every edge)
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), clipped to the scene


# ---------------------------------------------------------------------------------------------- geometry

def _scene_height(height: int) -> int:
    return height - strip_height(height)


def _radius(width: int, height: int) -> float:
    return float(math.floor(min(0.36 * _scene_height(height) / NUM_LANES, 0.09 * width)))


def _lane_y(lane: int) -> float:
    return (lane + 0.5) / NUM_LANES


def scene_at(record: VideoRecord, t: float) -> list[ShapeState]:
    """The shapes visible at time t (seconds), in drawing order, replaying record.events."""
    state: dict[int, dict] = {}
    for ev in record.events:
        if ev.start_s > t:
            continue
        if ev.kind == "appear":
            state[ev.object_id] = {"shape": ev.shape, "colour": ev.colour, "y": ev.y, "x": _x_at(ev, t)}
        elif ev.object_id in state:
            if ev.kind == "move":
                state[ev.object_id]["x"] = _x_at(ev, t)
            elif ev.kind == "change_colour":
                state[ev.object_id]["colour"] = ev.colour
    w, h = record.width, record.height
    sh, r = _scene_height(h), _radius(w, h)
    out = []
    for oid in sorted(state):
        s = state[oid]
        cx, cy = s["x"] * w, s["y"] * sh
        # The triangle points up; its widest solid part is below the centre.
        py = cy + r / 3 if s["shape"] == "triangle" else cy
        bbox = (max(0, math.floor(cx - r)), max(0, math.floor(cy - r)),
                min(w, math.ceil(cx + r) + 1), min(sh, math.ceil(cy + r) + 1))
        out.append(ShapeState(oid, s["shape"], s["colour"], COLOURS[s["colour"]], cx, cy, r,
                              (int(cx), int(py)), bbox))
    return out


def _x_at(ev: Event, t: float) -> float:
    if t >= ev.end_s or ev.end_s <= ev.start_s:
        return ev.x_to
    return ev.x_from + (ev.x_to - ev.x_from) * (t - ev.start_s) / (ev.end_s - ev.start_s)


# --------------------------------------------------------------------------------------------- rendering

def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "triangle":  # apex up, base at cy + r, base width 2r
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    raise ValueError(f"unknown shape {shape!r}")


def expected_frame(record: VideoRecord, frame_index: int) -> np.ndarray:
    """The exact frame `frame_index` as rendered before encoding: uint8 [H, W, 3] RGB."""
    if not (0 <= frame_index < record.num_frames):
        raise DatasetError(f"{record.video_id}: frame_index must be in [0, {record.num_frames}), got {frame_index}")
    w, h = record.width, record.height
    frame = np.empty((h, w, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    t = frame_index / record.fps
    for ev in record.events:
        if ev.kind == "flash" and ev.start_s <= t + 1e-9 < ev.end_s:
            frame[:_scene_height(h)] = COLOURS[ev.colour]
    for s in scene_at(record, t):
        x0, y0, x1, y1 = s.bbox
        if x1 <= x0 or y1 <= y0:
            continue
        # Pixel centres at +0.5 so shapes are symmetric about (cx, cy).
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
        mask = _shape_mask(s.shape, xx, yy, s.cx, s.cy, s.radius)
        frame[y0:y1, x0:x1][mask] = s.rgb
    draw_frame_code(frame, frame_index)
    return frame


def iter_expected_frames(record: VideoRecord) -> Iterator[np.ndarray]:
    """Every frame of `record` as rendered before encoding, in order (a glimpse clip by its own renderer)."""
    if any(ev.kind == "glimpse" for ev in record.events):
        from engine.data.glimpse import render_frames

        yield from render_frames(record)
        return
    for i in range(record.num_frames):
        yield expected_frame(record, i)


def render_video(record: VideoRecord, path: str | os.PathLike | None = None) -> Path:
    """Encode every frame of `record` with its codec into `path` (default record.path); returns the path."""
    out = Path(path) if path is not None else Path(record.path)
    if record.codec not in CODECS:
        raise ConfigError("codec", f"must be one of {sorted(CODECS)}, got {record.codec!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    _encode(out, iter_expected_frames(record), CODECS[record.codec], record.fps, record.width, record.height)
    return out


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _encode(path: Path, frames: Iterator[np.ndarray], spec: CodecSpec, fps: float, width: int, height: int) -> None:
    # fflags=+bitexact keeps muxers from writing random UIDs and library version strings, and one encoder
    # thread keeps the bitstream independent of the core count: same PyAV build -> byte-identical files.
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(spec.encoder, rate=_rate(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
        stream.thread_count = 1
        ctx = stream.codec_context
        ctx.options = dict(spec.options)
        if spec.encoder == "mjpeg":
            ctx.qmin, ctx.qmax = 2, 3  # high quality: the default (q ~ 2..31) blurs edges visibly
        else:
            ctx.gop_size = max(1, round(2 * fps))  # a keyframe every 2 s, so seeking has work to do
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))


# ---------------------------------------------------------------------------------------------- planning

def _video_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def plan_video(video_id: str, path: Path, seed: int, index: int, codec: str, width: int, height: int,
               fps: float, num_frames: int) -> VideoRecord:
    """Choose the segments and events of one video (no rendering). Pure function of its arguments."""
    rng = _video_rng(seed, index)
    duration = num_frames / fps
    last_cut = math.floor(duration - 1 + 1e-9)  # every segment lasts >= 1 s; cuts fall on whole seconds
    n_seg = int(min(rng.integers(2, 5), last_cut + 1))
    cuts = sorted(int(c) for c in rng.choice(np.arange(1, last_cut + 1), size=n_seg - 1, replace=False))
    bounds = [0.0, *map(float, cuts), duration]

    free_shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))]
    free_colours = [list(COLOURS)[i] for i in rng.permutation(len(COLOURS))]  # each colour used once per video
    free_lanes = [int(i) for i in rng.permutation(NUM_LANES)]
    objects: dict[int, dict] = {}  # object_id -> shape, colour, lane, pos
    events: list[Event] = []
    segments: list[Segment] = []
    for k in range(n_seg):
        s, e = bounds[k], bounds[k + 1]
        choices = []
        if len(objects) < MAX_OBJECTS:
            choices += ["appear"] * (3 if len(objects) < 2 else 1)
        if objects:
            choices += ["move", "move", "change_colour"]
        kind = choices[int(rng.integers(len(choices)))]
        if kind == "appear":
            oid = len(objects)
            obj = {"shape": free_shapes.pop(), "colour": free_colours.pop(), "lane": free_lanes.pop()}
            pos_from = list(POSITIONS)[int(rng.integers(len(POSITIONS)))]
            moves = bool(rng.random() < 0.5)
            pos_to = _other_position(rng, pos_from) if moves else pos_from
            ev = Event("appear", s, e if moves else s, oid, obj["shape"], obj["colour"], _lane_y(obj["lane"]),
                       POSITIONS[pos_from], POSITIONS[pos_to], pos_from, pos_to)
            caption = f"a {obj['colour']} {obj['shape']} appears at the {pos_from}"
            if moves:
                caption += f" and moves {ev.direction}"
            obj["pos"] = pos_to
            objects[oid] = obj
        else:
            oid = int(rng.integers(len(objects)))
            obj = objects[oid]
            if kind == "move":
                pos_to = _other_position(rng, obj["pos"])
                ev = Event("move", s, e, oid, obj["shape"], obj["colour"], _lane_y(obj["lane"]),
                           POSITIONS[obj["pos"]], POSITIONS[pos_to], obj["pos"], pos_to)
                caption = f"the {obj['colour']} {obj['shape']} moves {ev.direction}"
                obj["pos"] = pos_to
            else:
                new = free_colours.pop()
                x = POSITIONS[obj["pos"]]
                ev = Event("change_colour", s, s, oid, obj["shape"], new, _lane_y(obj["lane"]), x, x,
                           obj["pos"], obj["pos"], from_colour=obj["colour"])
                caption = f"the {obj['colour']} {obj['shape']} turns {new}"
                obj["colour"] = new
        events.append(ev)
        segments.append(Segment(s, e, caption))
    return VideoRecord(video_id=video_id, path=path, codec=codec, fps=fps, num_frames=num_frames, width=width,
                       height=height, duration_s=duration, segments=segments, events=events, seed=seed)


def _other_position(rng: np.random.Generator, pos: str) -> str:
    others = [p for p in POSITIONS if p != pos]
    return others[int(rng.integers(len(others)))]


# --------------------------------------------------------------------------------------------- questions

def make_questions(record: VideoRecord, split: str, rng: np.random.Generator) -> list[QARow]:
    """MCQ and temporal-grounding rows whose answers follow from record.events alone.

    A grounding answer is the span of the segment whose caption describes the event (for an instantaneous
    appear or colour change that span starts at the event). Questions that would fit two events are dropped.
    """
    seg_of = {id(ev): seg for ev, seg in zip(record.events, record.segments)}
    appears = [ev for ev in record.events if ev.kind == "appear"]
    changes = [ev for ev in record.events if ev.kind == "change_colour"]
    changed_ids = {ev.object_id for ev in changes}
    mcq: list[tuple[str, str, list[str]]] = []  # question, correct, distractor pool

    colours, shapes = list(COLOURS), list(SHAPES)
    mcq.append(("Which shape appears first?", appears[0].shape, shapes))
    mcq.append(("How many shapes appear in the video?", str(len(appears)), ["1", "2", "3", "4"]))
    for a, b in zip(appears, appears[1:]):
        if b.object_id not in changed_ids:  # otherwise "what colour is it" has two true answers
            mcq.append((f"What colour is the {b.shape} that appears after the {a.shape}?", b.colour, colours))
    for ev in changes:
        mcq.append((f"What colour does the {ev.from_colour} {ev.shape} turn into?", ev.colour, colours))
    for oid in sorted({ev.object_id for ev in appears}):
        moves = [ev for ev in record.events if ev.object_id == oid and ev.direction is not None]
        dirs = {ev.direction for ev in moves}
        if len(dirs) == 1:
            first = next(ev for ev in record.events if ev.object_id == oid)
            q = f"In which direction does the {first.shape} move?"
            mcq.append((q, dirs.pop(), ["left", "right", "up", "down"]))
        final = [ev for ev in record.events if ev.object_id == oid and ev.kind != "move"][-1]
        mcq.append((f"What colour is the {final.shape} at the end of the video?", final.colour, colours))

    grounding: list[tuple[str, Segment]] = []
    for ev in record.events:
        if ev.kind == "appear":
            q = f"When does the {ev.colour} {ev.shape} appear?"
        elif ev.kind == "change_colour":
            q = f"When does the {ev.shape} turn from {ev.from_colour} to {ev.colour}?"
        else:
            q = f"When does the {ev.colour} {ev.shape} move {ev.direction}?"
        grounding.append((q, seg_of[id(ev)]))
    # A question that fits two events (the same red circle moving right twice, or appearing while moving right
    # and later moving right again) has no single answer: drop it.
    texts = [q for q, _ in grounding] + [f"When does the {ev.colour} {ev.shape} move {ev.direction}?"
                                         for ev in appears if ev.direction is not None]
    grounding = [(q, seg) for q, seg in grounding if texts.count(q) == 1]

    rows: list[QARow] = []
    for question, correct, pool in mcq:
        wrong = [p for p in pool if p != correct]
        picks = [wrong[int(i)] for i in rng.choice(len(wrong), size=len(LETTERS) - 1, replace=False)]
        options = [correct, *picks]
        options = [options[int(i)] for i in rng.permutation(len(options))]
        rows.append(QARow(f"{record.video_id}-q{len(rows):02d}", record.video_id, record.path, "mcq", question,
                          options, LETTERS[options.index(correct)], None, split))
    for question, seg in grounding:
        span = (seg.start_s, seg.end_s)
        rows.append(QARow(f"{record.video_id}-q{len(rows):02d}", record.video_id, record.path, "grounding",
                          question, [], format_span(*span), span, split))
    return rows


# ----------------------------------------------------------------------------------------------- dataset

def _check_args(num_videos: int, seed: int, codec: str, width: int, height: int, fps: float, duration_s: float,
                eval_fraction: float) -> int:
    def is_int(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(num_videos) or num_videos < 1:
        raise ConfigError("num_videos", f"must be an integer >= 1, got {num_videos!r}")
    if not is_int(seed) or seed < 0:
        raise ConfigError("seed", f"must be an integer >= 0, got {seed!r}")
    if codec not in CODECS:
        raise ConfigError("codec", f"must be one of {sorted(CODECS)}, got {codec!r}")
    for key, v, lo in (("width", width, 128), ("height", height, 64)):
        if not is_int(v) or v < lo or v > 4096:
            # The frame-index strip needs >= 8 px cells (width / 16) and an >= 8 px strip (height / 8).
            raise ConfigError(key, f"must be an integer in [{lo}, 4096], got {v!r}")
        if v % 2:
            raise ConfigError(key, f"must be even (4:2:0 chroma halves it), got {v}; use {v - 1} or {v + 1}")
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or not (1 <= fps <= 120):
        raise ConfigError("fps", f"must be a number in [1, 120], got {fps!r}")
    if not isinstance(duration_s, (int, float)) or not math.isfinite(duration_s) or duration_s < 2:
        raise ConfigError("duration_s", f"must be a number >= 2 (two segments of >= 1 s), got {duration_s!r}")
    num_frames = round(duration_s * fps)
    if num_frames > MAX_FRAME_INDEX + 1:
        raise ConfigError("duration_s", f"{duration_s} s at {fps} fps is {num_frames} frames; the frame-index "
                                        f"code holds at most {MAX_FRAME_INDEX + 1}")
    if num_frames / fps < 2:
        raise ConfigError("duration_s", f"{duration_s} s at {fps} fps rounds to {num_frames} frames, under 2 s")
    if not isinstance(eval_fraction, (int, float)) or not (0 <= eval_fraction <= 1):
        raise ConfigError("eval_fraction", f"must be in [0, 1], got {eval_fraction!r}")
    return num_frames


def make_dataset(out_dir: str | os.PathLike, num_videos: int = 8, seed: int = 0, codec: str = "h264",
                 width: int = 160, height: int = 120, fps: float = 8.0, duration_s: float = 8.0,
                 eval_fraction: float = 0.25, progress: Callable[[int, int, VideoRecord], None] | None = None,
                 verbose: bool = False, task: str = "shapes", min_duration_s: float | None = None) -> DatasetPaths:
    """Render `num_videos` clips into out_dir/videos/ and write videos.jsonl, train.jsonl and eval.jsonl.

    task "shapes": coloured shapes that appear, move and change colour, with MCQ and grounding questions;
    task "flash": engine/data/flash.py (the quick smoke task), colours balanced within each split;
    task "glimpse": engine/data/glimpse.py (the learning demo's task): each clip lasts a whole number of seconds
    drawn from [min_duration_s, duration_s] (min_duration_s None: duration_s for all).

    The frame count is round(duration_s * fps); duration_s in the records is that count / fps, and fps is the
    nearest fraction with denominator <= 1001 (what the container stores: 29.97 stays 2997/100). Splits are by
    video (all questions about one video land in one split). Same arguments -> byte-identical JSONL and, with
    the same PyAV build, byte-identical video files. Existing files of the same names are overwritten.
    """
    num_frames = _check_args(num_videos, seed, codec, width, height, fps, duration_s, eval_fraction)
    fps = float(_rate(fps))  # what the container stores, so records and files agree
    root = Path(out_dir).resolve()
    check_writable(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    n_eval = min(num_videos, round(num_videos * eval_fraction))
    eval_ids = {int(i) for i in np.random.default_rng(np.random.SeedSequence([seed, 2**31])).permutation(num_videos)[:n_eval]}

    if task not in TASKS:
        raise ConfigError("task", f"must be one of {TASKS}, got {task!r}")
    if task == "flash":
        from engine.data import flash

        colours = flash.balanced_colours(sorted(eval_ids), seed, 1)
        colours |= flash.balanced_colours(sorted(set(range(num_videos)) - eval_ids), seed, 0)
    if task == "glimpse":
        from engine.data import glimpse

        plan = glimpse.split_plan(sorted(eval_ids), seed, 1) | glimpse.split_plan(sorted(set(range(num_videos)) - eval_ids), seed, 0)
        lo = duration_s if min_duration_s is None else min_duration_s
        if not (8 <= lo <= duration_s):
            raise ConfigError("min_duration_s", f"the glimpse task needs 8 <= min_duration_s <= duration_s "
                                                f"({duration_s}), got {lo}")
    records: list[VideoRecord] = []
    rows: dict[str, list[QARow]] = {"train": [], "eval": []}
    splits: list[str] = []
    for i in range(num_videos):
        vid = f"s{seed}-v{i:04d}"
        path = root / "videos" / f"{vid}{CODECS[codec].ext}"
        split = "eval" if i in eval_ids else "train"
        if task == "flash":
            rec = flash.plan_flash_video(vid, path, seed, i, colours[i], codec, width, height, fps, num_frames)
            questions = flash.flash_questions(rec, split)
        elif task == "glimpse":
            colour, letter = plan[i]
            rec = glimpse.plan_glimpse_video(vid, path, seed, i, colour, codec, width, height, fps,
                                             glimpse.clip_duration(seed, i, lo, duration_s))
            questions = glimpse.glimpse_questions(rec, split, letter, i, seed)
        else:
            rec = plan_video(vid, path, seed, i, codec, width, height, fps, num_frames)
            # Questions get their own stream so changing them never changes the videos.
            questions = make_questions(rec, split, np.random.default_rng(np.random.SeedSequence([seed, i, 1])))
        rows[split].extend(questions)
        records.append(rec)
        splits.append(split)
    # Rendering is the slow part: clips are encoded in parallel processes (one encoder thread each, so the
    # bytes do not depend on how many run at once), reported in order.
    workers = min(os.cpu_count() or 1, 8) if num_videos >= 16 else 1
    with (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1
          else nullcontext()) as pool:
        rendered = pool.map(render_video, records, chunksize=4) if pool is not None else map(render_video, records)
        for i, (rec, _) in enumerate(zip(records, rendered)):
            if progress is not None:
                progress(i, num_videos, rec)
            if verbose:
                print(f"make-data: [{i + 1}/{num_videos}] {Path(rec.path).name} {rec.num_frames} frames, "
                      f"{len(rec.segments)} segments, {splits[i]}", flush=True)

    paths = DatasetPaths(root, root / "videos.jsonl", root / "train.jsonl", root / "eval.jsonl")
    _write_jsonl(paths.videos_jsonl, [r.to_json(root) for r in records])
    _write_jsonl(paths.train_jsonl, [r.to_json(root) for r in rows["train"]])
    _write_jsonl(paths.eval_jsonl, [r.to_json(root) for r in rows["eval"]])
    return paths


OWN_FILES = ("videos", "videos.jsonl", "train.jsonl", "eval.jsonl")
_OWN_VIDEO = re.compile(r"s\d+-v\d{4}\.(mp4|webm|avi)(\.tmp)?")


def check_writable(root: Path) -> None:
    """Refuse a folder that holds anything but a synthetic dataset: the generator overwrites its own files
    and nobody else's."""
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a folder; the synthetic dataset is written into a folder "
                           "(your own data files go in data.train_files / data.val_files)")
    if not root.is_dir():
        return
    foreign = [p.name for p in root.iterdir() if p.name not in OWN_FILES and not p.name.endswith(".jsonl.tmp")]
    videos = root / "videos"
    if videos.is_dir():
        foreign += [f"videos/{p.name}" for p in videos.iterdir() if not _OWN_VIDEO.fullmatch(p.name)]
    if foreign:
        shown = ", ".join(sorted(foreign)[:5]) + (" ..." if len(foreign) > 5 else "")
        raise DatasetError(f"{root}: refusing to write the synthetic dataset into a folder that holds other files "
                           f"({shown}); name an empty or new folder in data.dir, or point data.train_files at "
                           "your own data")


def ensure_dataset(cfg, log: Callable[[str], None] = print) -> Path:
    """The synthetic dataset folder cfg.dir (a DataConfig), rendered from cfg's seed when it holds none yet."""
    root = Path(cfg.dir)
    if not (root / "train.jsonl").is_file():
        check_writable(root.resolve())
        log(f"rendering {cfg.num_videos} synthetic {cfg.codec} videos into {root} ...")
        make_dataset(root, num_videos=cfg.num_videos, seed=cfg.seed, codec=cfg.codec, width=cfg.width,
                     height=cfg.height, fps=cfg.fps, duration_s=cfg.duration_s, task=cfg.task,
                     eval_fraction=cfg.eval_fraction, min_duration_s=cfg.min_duration_s)
    return root


def _write_jsonl(path: Path, objs: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for o in objs:
            f.write(json.dumps(o, sort_keys=True, ensure_ascii=True) + "\n")
    os.replace(tmp, path)  # a reader never sees half a file
