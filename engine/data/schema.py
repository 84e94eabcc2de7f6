"""Row schema of vthink datasets: video records, timed segments and events, question/answer rows, JSON codecs."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import VthinkError

# Problem types. The Video-R1 names map as: "multiple choice" -> mcq, "numerical", "OCR" -> ocr,
# "free-form", "regression"; grounding answers are time spans (scored by temporal IoU).
QA_KINDS = ("mcq", "grounding", "numerical", "ocr", "free-form", "regression")
SPLITS = ("train", "eval")
EVENT_KINDS = ("appear", "move", "change_colour", "flash", "glimpse", "sweep")
_SPAN = re.compile(r"(\d{2,}):(\d{2})-(\d{2,}):(\d{2})")


class DatasetError(VthinkError, ValueError):
    """A dataset file or row is missing, malformed or inconsistent; the message names file and line."""


class FrameCodeError(DatasetError):
    """A frame carries no readable frame-index code (cropped, too small, or not from the synthetic generator)."""


def format_mmss(t: float) -> str:
    """Seconds -> 'MM:SS' (whole seconds, rounded down), the time format the models write."""
    if not math.isfinite(t) or t < 0:
        raise DatasetError(f"format_mmss: time must be a finite number >= 0, got {t!r}")
    s = int(math.floor(t + 1e-9))  # 1.9999999 from float sums still means 2 s only when it is 2 s
    return f"{s // 60:02d}:{s % 60:02d}"


def format_span(start_s: float, end_s: float) -> str:
    return f"{format_mmss(start_s)}-{format_mmss(end_s)}"


def parse_span(text: str) -> tuple[float, float]:
    """'MM:SS-MM:SS' -> (start_s, end_s). Raises DatasetError on anything else."""
    m = _SPAN.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None or int(m[2]) >= 60 or int(m[4]) >= 60:
        raise DatasetError(f"not an 'MM:SS-MM:SS' span: {text!r}")
    out = [float(int(m[1]) * 60 + int(m[2])), float(int(m[3]) * 60 + int(m[4]))]
    if out[1] < out[0]:
        raise DatasetError(f"span ends before it starts: {text!r}")
    return out[0], out[1]


@dataclass(frozen=True)
class Segment:
    """A caption that holds over [start_s, end_s) of a video."""

    start_s: float
    end_s: float
    caption: str

    def to_json(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "end_s": self.end_s, "caption": self.caption}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Segment":
        _need(d, ("start_s", "end_s", "caption"), "segment")
        seg = cls(float(d["start_s"]), float(d["end_s"]), str(d["caption"]))
        if not (0 <= seg.start_s < seg.end_s):
            raise DatasetError(f"segment needs 0 <= start_s < end_s, got {seg.start_s}, {seg.end_s}")
        return seg


@dataclass(frozen=True)
class Event:
    """One thing that happens to one shape. Coordinates are fractions of the scene area (above the code strip).

    appear:        the shape shows up at (x_from, y) at start_s; when x_to != x_from it then slides to x_to,
                   reaching it at end_s.
    move:          the shape slides from x_from to x_to, linearly in time over [start_s, end_s].
    change_colour: at start_s the shape's colour switches from from_colour to colour (end_s == start_s).
    flash:         the whole scene is filled with `colour` over [start_s, end_s) (shape "screen").
    glimpse:       a `colour` box of size w x h centred at (x_from, y) is shown over [start_s, end_s).
    sweep:         a `colour` bar of size w x h slides from x_from to x_to over [start_s, end_s).
    """

    kind: str
    start_s: float
    end_s: float
    object_id: int
    shape: str
    colour: str
    y: float
    x_from: float
    x_to: float
    pos_from: str  # named positions ("left", "centre", "right") for captions and questions
    pos_to: str
    from_colour: str | None = None
    w: float | None = None  # glimpse / sweep: the box's width and height, fractions of the scene
    h: float | None = None

    @property
    def direction(self) -> str | None:
        if self.x_to > self.x_from:
            return "right"
        if self.x_to < self.x_from:
            return "left"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "start_s": self.start_s, "end_s": self.end_s, "object_id": self.object_id,
            "shape": self.shape, "colour": self.colour, "y": self.y, "x_from": self.x_from, "x_to": self.x_to,
            "pos_from": self.pos_from, "pos_to": self.pos_to, "from_colour": self.from_colour,
            **({"w": self.w, "h": self.h} if self.w is not None else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Event":
        keys = ("kind", "start_s", "end_s", "object_id", "shape", "colour", "y", "x_from", "x_to", "pos_from", "pos_to")
        _need(d, keys, "event")
        if d["kind"] not in EVENT_KINDS:
            raise DatasetError(f"event kind must be one of {EVENT_KINDS}, got {d['kind']!r}")
        return cls(
            kind=str(d["kind"]), start_s=float(d["start_s"]), end_s=float(d["end_s"]), object_id=int(d["object_id"]),
            shape=str(d["shape"]), colour=str(d["colour"]), y=float(d["y"]), x_from=float(d["x_from"]),
            x_to=float(d["x_to"]), pos_from=str(d["pos_from"]), pos_to=str(d["pos_to"]),
            from_colour=None if d.get("from_colour") is None else str(d["from_colour"]),
            w=None if d.get("w") is None else float(d["w"]), h=None if d.get("h") is None else float(d["h"]),
        )


@dataclass
class VideoRecord:
    """One video file and everything known about its content, frame by frame."""

    video_id: str
    path: Path  # absolute in memory; stored relative to the dataset dir
    codec: str
    fps: float
    num_frames: int
    width: int
    height: int
    duration_s: float
    segments: list[Segment] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    seed: int | None = None

    def to_json(self, root: str | os.PathLike | None = None) -> dict[str, Any]:
        return {
            "video_id": self.video_id, "path": _relative(self.path, root), "codec": self.codec, "fps": self.fps,
            "num_frames": self.num_frames, "width": self.width, "height": self.height, "duration_s": self.duration_s,
            "segments": [s.to_json() for s in self.segments], "events": [e.to_json() for e in self.events],
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], root: str | os.PathLike | None = None) -> "VideoRecord":
        keys = ("video_id", "path", "codec", "fps", "num_frames", "width", "height", "duration_s", "segments", "events")
        _need(d, keys, "video record")
        if not isinstance(d["segments"], list) or not isinstance(d["events"], list):
            raise DatasetError("video record: 'segments' and 'events' must be lists")
        rec = cls(
            video_id=str(d["video_id"]), path=_resolve(d["path"], root), codec=str(d["codec"]), fps=float(d["fps"]),
            num_frames=int(d["num_frames"]), width=int(d["width"]), height=int(d["height"]),
            duration_s=float(d["duration_s"]), segments=[Segment.from_json(s) for s in d["segments"]],
            events=[Event.from_json(e) for e in d["events"]], seed=None if d.get("seed") is None else int(d["seed"]),
        )
        if rec.fps <= 0 or rec.num_frames < 1 or rec.width < 1 or rec.height < 1:
            raise DatasetError(f"video record {rec.video_id}: fps, num_frames, width, height must be positive")
        return rec


@dataclass
class QARow:
    """One question about one video.

    mcq: `answer` is a letter indexing `options`. grounding: `answer` is 'MM:SS-MM:SS' and answer_span_s
    holds the exact (start_s, end_s). numerical / regression: `answer` holds a number. ocr / free-form:
    `answer` is text. `reasoning` is a ground-truth trace written before the answer (an SFT target, e.g.
    Video-Thinker-10K's); `source` says where the row was read ("file:line"), for messages.
    """

    id: str
    video_id: str
    video: Path  # absolute in memory; stored relative to the dataset dir
    kind: str
    question: str
    options: list[str]
    answer: str
    answer_span_s: tuple[float, float] | None
    split: str
    reasoning: str | None = None
    source: str = ""
    # The source row's own columns as read (Video-R1's problem_type, data_source, any extra column), for reward.fn.
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in QA_KINDS:
            raise DatasetError(f"row {self.id}: kind must be one of {QA_KINDS}, got {self.kind!r}")
        if self.split not in SPLITS:
            raise DatasetError(f"row {self.id}: split must be one of {SPLITS}, got {self.split!r}")
        if not self.question.strip():
            raise DatasetError(f"row {self.id}: empty question")
        if self.kind == "mcq":
            letters = [chr(ord("A") + i) for i in range(len(self.options))]
            if len(self.options) < 2 or self.answer not in letters:
                raise DatasetError(f"row {self.id}: mcq needs >= 2 options and an answer among {letters}, "
                                   f"got {len(self.options)} options, answer {self.answer!r}")
            return
        if self.options:
            raise DatasetError(f"row {self.id}: {self.kind} rows have no options")
        if self.kind == "grounding":
            if self.answer_span_s is None:
                self.answer_span_s = parse_span(self.answer)
            a, b = self.answer_span_s
            if not (0 <= a <= b):
                raise DatasetError(f"row {self.id}: answer_span_s needs 0 <= start <= end, got {self.answer_span_s}")
        elif self.kind in ("numerical", "regression"):
            try:
                value = float(self.answer.replace(",", ""))
            except ValueError:
                raise DatasetError(f"row {self.id}: a {self.kind} answer must be a number, got {self.answer!r}") from None
            if not math.isfinite(value):
                raise DatasetError(f"row {self.id}: a {self.kind} answer must be finite, got {self.answer!r}")
        elif not self.answer.strip():
            raise DatasetError(f"row {self.id}: empty {self.kind} answer")

    @property
    def answer_index(self) -> int | None:
        return ord(self.answer) - ord("A") if self.kind == "mcq" else None

    def to_json(self, root: str | os.PathLike | None = None) -> dict[str, Any]:
        out = {
            "id": self.id, "video_id": self.video_id, "video": _relative(self.video, root), "kind": self.kind,
            "question": self.question, "options": list(self.options), "answer": self.answer,
            "answer_span_s": None if self.answer_span_s is None else list(self.answer_span_s), "split": self.split,
        }
        if self.reasoning is not None:
            out["reasoning"] = self.reasoning
        if self.fields:
            out["fields"] = self.fields
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any], root: str | os.PathLike | None = None) -> "QARow":
        _need(d, ("id", "video_id", "video", "kind", "question", "options", "answer", "split"), "qa row")
        span = d.get("answer_span_s")
        if span is not None:
            if not (isinstance(span, (list, tuple)) and len(span) == 2):
                raise DatasetError(f"row {d['id']}: answer_span_s must be [start_s, end_s], got {span!r}")
            span = (float(span[0]), float(span[1]))
        if not isinstance(d["options"], list):
            raise DatasetError(f"row {d['id']}: options must be a list")
        reasoning = d.get("reasoning")
        return cls(
            id=str(d["id"]), video_id=str(d["video_id"]), video=_resolve(d["video"], root), kind=str(d["kind"]),
            question=str(d["question"]), options=[str(o) for o in d["options"]], answer=str(d["answer"]),
            answer_span_s=span, split=str(d["split"]), reasoning=None if reasoning is None else str(reasoning),
            fields=dict(d.get("fields") or {}),
        )


def _need(d: Any, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(d, dict):
        raise DatasetError(f"{what} must be a JSON object, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise DatasetError(f"{what} is missing key(s) {missing}")


def _relative(path: Path, root: str | os.PathLike | None) -> str:
    # POSIX separators so a dataset written on one OS loads on another.
    if root is None:
        return Path(path).as_posix()
    return Path(os.path.relpath(Path(path), Path(root))).as_posix()


def _resolve(path: Any, root: str | os.PathLike | None) -> Path:
    if not isinstance(path, str) or not path:
        raise DatasetError(f"path must be a non-empty string, got {path!r}")
    p = Path(path)
    if root is None or p.is_absolute():
        return p
    return (Path(root) / p).resolve()
