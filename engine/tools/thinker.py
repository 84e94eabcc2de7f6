"""Video-Thinker intrinsic mode: parse `<time>/<caption>/<think>` segment blocks and `<answer>`, and
find a just-closed `<time>a-b</time>` for the grounded re-look.

Format (Video-Thinker, arXiv 2510.23473), per key segment:
    <time>MM:SS-MM:SS</time> <caption>clues</caption> <think>analysis</think>
then <answer>X</answer>. Parsing is a single left-to-right pass over the tag positions (one
linear regex scan), so it is linear in the text and never raises; anything off-format is
reported in `ThinkerTrace.errors` and parsing goes on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.reward.parse import parse_span
from engine.tools.protocol import ToolCall
from engine.tools.registry import Observation, ToolContext, ToolRegistry
from engine.tools.video_tools import FrameZoomTool

_TAG = re.compile(r"<(/?)(time|caption|think|answer)>")
MAX_SPAN_CHARS = 64  # a real span is ~11 chars; the cap also keeps parse_span's regexes on short input
MAX_ERRORS = 32  # a pathological text must not build an unbounded error list


@dataclass
class ThinkerSegment:
    start_s: float
    end_s: float
    caption: str  # "" when the block has no <caption>
    think: str  # "" when the block has no <think>


@dataclass
class ThinkerTrace:
    segments: list[ThinkerSegment] = field(default_factory=list)
    answer: str | None = None
    errors: list[str] = field(default_factory=list)


def parse_time_span(content: str) -> tuple[tuple[float, float] | None, str | None]:
    """'MM:SS-MM:SS' (or 'a-b' seconds) -> ((start_s, end_s), None), or (None, why not)."""
    if len(content) > MAX_SPAN_CHARS:
        return None, f"time span of {len(content)} characters is not 'MM:SS-MM:SS'"
    span = parse_span(content)
    if span is None:
        return None, f"time span {content.strip()!r} is not 'MM:SS-MM:SS'"
    if span[1] < span[0]:
        return None, f"time span {content.strip()!r} ends before it starts"
    return span, None


class _Builder:
    """The segment being assembled; `span` is None after a <time> that did not parse."""

    def __init__(self, span: tuple[float, float] | None):
        self.span = span
        self.caption: str | None = None
        self.think: str | None = None


def parse_thinker(text: str) -> ThinkerTrace:
    """Segments and answer of a Video-Thinker response. Never raises; linear time."""
    trace = ThinkerTrace()
    if not isinstance(text, str):
        trace.errors.append(f"response must be a string, got {type(text).__name__}")
        return trace
    errors: list[str] = []

    def error(message: str) -> None:
        if len(errors) < MAX_ERRORS:
            errors.append(message)

    current: _Builder | None = None

    def flush() -> None:
        nonlocal current
        if current is not None and current.span is not None:
            number = len(trace.segments) + 1
            if current.caption is None:
                error(f"segment {number} has no <caption>")
            if current.think is None:
                error(f"segment {number} has no <think>")
            trace.segments.append(ThinkerSegment(current.span[0], current.span[1], current.caption or "",
                                                 current.think or ""))
        current = None

    open_tag: str | None = None
    open_at = open_end = 0
    answers = 0
    for m in _TAG.finditer(text):
        closing, tag = m.group(1) == "/", m.group(2)
        if open_tag is None:
            if closing:
                error(f"</{tag}> at character {m.start()} has no opening <{tag}>")
            else:
                open_tag, open_at, open_end = tag, m.start(), m.end()
            continue
        if not closing or tag != open_tag:
            error(f"<{open_tag}> at character {open_at} is not closed before <{'/' if closing else ''}{tag}>")
            open_tag = None
            if not closing:
                open_tag, open_at, open_end = tag, m.start(), m.end()
            continue
        content = text[open_end:m.start()]
        open_tag = None
        if tag == "time":
            flush()
            span, why = parse_time_span(content)
            if why:
                error(why)
            current = _Builder(span)
        elif tag == "answer":
            flush()
            answers += 1
            trace.answer = content.strip()
        elif current is None:
            error(f"<{tag}> at character {open_at} is outside a segment (no <time> before it)")
        elif current.span is None:
            pass  # belongs to a segment whose time did not parse, reported already
        elif getattr(current, tag) is not None:
            error(f"segment {len(trace.segments) + 1} has more than one <{tag}>")
        else:
            if tag == "caption" and current.think is not None:
                error(f"segment {len(trace.segments) + 1}: <caption> comes after <think>")
            setattr(current, tag, content.strip())
    if open_tag is not None:
        error(f"<{open_tag}> at character {open_at} is never closed")
    flush()
    if answers > 1:
        error(f"{answers} <answer> blocks; the last one is used")
    if answers == 0:
        error("no <answer>")
    trace.errors = errors
    return trace


def relook_span(text: str) -> tuple[float, float] | None:
    """(start_s, end_s) of the `<time>a-b</time>` that closes `text` (trailing whitespace allowed), or
    None when the text does not end with a parsable, non-empty span. The agent loop stops generation on
    `</time>` (the stop string is kept in the output) and injects the frames of that span."""
    if not isinstance(text, str):
        return None
    end = len(text.rstrip())
    close = end - len("</time>")
    if close < 0 or not text.startswith("</time>", close):
        return None
    opened = text.rfind("<time>", max(0, close - MAX_SPAN_CHARS - len("<time>")), close)
    if opened < 0:
        return None
    span, _ = parse_time_span(text[opened + len("<time>"):close])
    if span is None or span[1] <= span[0]:
        return None
    return span


def relook_observation(text: str, ctx: ToolContext, num_frames: int | None = None) -> Observation | None:
    """The grounded re-look: frames of the span `text` just closed, as a frame_zoom observation (an
    error observation when the span cannot be served), or None when `text` does not end on a span."""
    span = relook_span(text)
    if span is None:
        return None
    arguments: dict = {"start": span[0], "end": span[1]}
    if num_frames is not None:
        arguments["num_frames"] = num_frames
    return ToolRegistry([FrameZoomTool()]).execute(ToolCall("frame_zoom", arguments), ctx)
