"""VideoThinker's caption space: an agent that sees only captions, and the grounding of its trajectories to video.

The agent reads the question, calls caption-space tools and answers:

* `clip_retrieval(query, topk)` — the real tool over the coarse segment captions (engine.tools), so its
  text is exactly what the video agent will read later;
* `caption_zoom(start, end)` — the fine per-second captions inside [start, end]: the text stand-in
  for looking at those frames.

A trajectory whose final answer is correct is kept (rejection sampling) and *grounded*: every
`caption_zoom` call becomes a `frame_zoom` call on the same window, whose observation (real frames
with real timestamps) is rendered when the SFT batch is built; retrieval results stay as they are.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from engine.errors import ToolCallError
from engine.reward.accuracy import temporal_iou
from engine.reward.parse import extract_answer, parse_span
from engine.rollout.seeds import derive_seed
from engine.tools import CaptionClipIndex, ClipRetrievalTool, ToolCall, format_tool_call, parse_time, parse_tool_call
from engine.tools.registry import ToolContext
from engine.tools.timefmt import format_time

CAPTION_ZOOM = {
    "name": "caption_zoom",
    "description": "Read the captions of every second inside a time window of the video.",
    "parameters": {"type": "object", "properties": {
        "start": {"type": ["number", "string"], "description": "window start: seconds or 'MM:SS'"},
        "end": {"type": ["number", "string"], "description": "window end: seconds or 'MM:SS'"},
        "num_frames": {"type": "integer", "description": "frames frame_zoom will show for this window "
                                                         "(captions are per second either way)"}},
        "required": ["start", "end"]},
}


class CaptionAgent(Protocol):
    """Anything that writes the next assistant turn of a caption-space conversation."""

    def act(self, messages: list[dict], seed: int) -> str: ...


@dataclass
class Turn:
    """One message of a trajectory: an assistant turn (its text) or a tool result."""

    role: str  # "assistant" | "tool"
    text: str
    name: str | None = None  # the tool that produced a "tool" turn

    def to_json(self) -> dict:
        return {"role": self.role, "text": self.text, "name": self.name}


@dataclass
class Trajectory:
    row_id: str
    turns: list[Turn] = field(default_factory=list)
    answer: str | None = None
    correct: bool = False


class CaptionSpace:
    """The caption-space environment for one dataset: retrieval over coarse captions, zoom over fine ones."""

    def __init__(self, records: dict, fine_captions, max_turns: int = 4):
        self.records = records
        self.index = CaptionClipIndex(records)
        self.retrieval = ClipRetrievalTool(self.index)
        self.fine = fine_captions  # record -> [(second, caption)]
        self.max_turns = max_turns

    def tools(self) -> list[dict]:
        return [{"type": "function", "function": {"name": self.retrieval.name, "description": self.retrieval.description,
                                                  "parameters": self.retrieval.parameters}},
                {"type": "function", "function": CAPTION_ZOOM}]

    def _call(self, call: ToolCall, record) -> str:
        if call.name == "clip_retrieval":
            ctx = ToolContext(str(record.path), None, None, record.duration_s, self.index)  # type: ignore[arg-type]
            return self.retrieval.run(self.retrieval.validate(call.arguments), ctx).text
        if call.name == "caption_zoom":
            start = parse_time(call.arguments.get("start"), "caption_zoom: argument 'start'")
            end = parse_time(call.arguments.get("end"), "caption_zoom: argument 'end'")
            if end <= start:
                raise ToolCallError("caption_zoom: end must be after start")
            lines = [f"{format_time(t, 0)} {c}" for t, c in self.fine(record) if start <= t < end]
            return f"caption_zoom {format_time(start)}-{format_time(end)}:\n" + ("\n".join(lines) or "(no captions)")
        raise ToolCallError(f"unknown tool {call.name!r}; available: clip_retrieval, caption_zoom")

    def run(self, agent: CaptionAgent, row, system: str, user: str, seed: int) -> Trajectory:
        """One caption-space episode of `agent` on `row`; ends at an answer or after max_turns tool calls."""
        record = self.records[row.video_id]
        messages = [{"role": "system", "content": hermes_system(system, self.tools())},
                    {"role": "user", "content": user}]
        traj = Trajectory(row.id)
        for k in range(self.max_turns + 1):
            text = agent.act(messages, derive_seed(seed, 0, 0, k))
            traj.turns.append(Turn("assistant", text))
            messages.append({"role": "assistant", "content": text})
            if "<tool_call>" not in text or k == self.max_turns:
                break
            try:
                call = parse_tool_call(text)
                obs, name = self._call(call, record), call.name
            except ToolCallError as e:
                obs, name = f"Error: {e}", None
            traj.turns.append(Turn("tool", obs, name))
            messages.append({"role": "tool", "content": obs})
        traj.answer = extract_answer(traj.turns[-1].text)
        traj.correct = traj.answer is not None and is_correct(traj.answer, row)
        return traj


def is_correct(answer: str, row) -> bool:
    """Rejection sampling's test: the right letter or text; for a grounding question a span with tIoU >= 0.5."""
    if row.kind == "grounding":
        span = parse_span(answer)
        return span is not None and temporal_iou(span, row.answer_span_s) >= 0.5
    return answer.strip() == row.answer


def hermes_system(system: str, tools: list[dict]) -> str:
    """`system` followed by the tool schemas in the Hermes layout Qwen's chat templates use."""
    listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (f"{system}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{listed}\n"
            "</tools>\n\nFor each function call, return a json object with function name and arguments within "
            '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
            "<args-json-object>}\n</tool_call>")


def ground(traj: Trajectory) -> list[dict]:
    """The video trajectory of a caption-space one: caption_zoom calls become frame_zoom calls on the same
    window, and their observations are left for the real frame_zoom to fill in (text None)."""
    out = []
    for turn in traj.turns:
        if turn.role == "assistant" and "<tool_call>" in turn.text:
            call = parse_tool_call(turn.text)
            if call.name == "caption_zoom":
                before = turn.text[:turn.text.index("<tool_call>")]
                out.append({"role": "assistant", "text": before + format_tool_call(ToolCall("frame_zoom", call.arguments))})
                continue
        if turn.role == "tool" and turn.name == "caption_zoom":
            out.append({"role": "tool", "name": "frame_zoom", "text": None})
            continue
        out.append(turn.to_json())
    return out


