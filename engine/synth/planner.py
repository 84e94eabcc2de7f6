"""The scripted caption-space planners: seeded, stochastic stand-ins for a chat model (the embedded default).

`RetrieveZoomPlanner` (the glimpse task, the demo's): clip_retrieval, then a zoom on the best hit with its
span copied verbatim, another hit when the look shows nothing, then the answer. `ScriptedPlanner` (the
flash smoke task): the global frames are too sparse, so look at the whole clip again, densely
(caption_zoom over [0, duration] with `zoom_frames` frames, grounded to frame_zoom), find the second whose
caption names a colour, and answer. With temperature T either strays as a sampled model would (a look at
a random window), so the kept fraction of rejection sampling can fall below 1, as in the paper's synthesis.
"""
from __future__ import annotations

import json
import random
import re

from engine.rollout.teacher import scan_options
from engine.tools import ToolCall, format_tool_call
from engine.tools.timefmt import format_time

_CAPTION = re.compile(r"^(\d{2}:\d{2}) the screen is (\w+)$", re.M)


class ScriptedPlanner:
    """Answers the flash task's questions in caption space."""

    def __init__(self, options: tuple[str, ...], duration_s: float, temperature: float = 0.7, zoom_frames: int = 16):
        self.options, self.duration_s = options, duration_s
        self.temperature, self.zoom_frames = temperature, zoom_frames

    def act(self, messages: list[dict], seed: int) -> str:
        rng = random.Random(seed)
        tool_msgs = [m["content"] for m in messages if m["role"] == "tool"]
        if not tool_msgs:
            if rng.random() < self.temperature / 2:
                start = 2 * rng.randrange(max(1, int(self.duration_s) // 2 - 1))
                return self._zoom(float(start), float(start + 4), 4)
            return self._zoom(0.0, self.duration_s, self.zoom_frames)
        return self._answer(tool_msgs[-1], rng)

    @staticmethod
    def _zoom(start: float, end: float, frames: int) -> str:
        args = {"start": format_time(start), "end": format_time(end), "num_frames": frames}
        return format_tool_call(ToolCall("caption_zoom", args))

    def _answer(self, captions: str, rng: random.Random) -> str:
        seen = [(t, c) for t, c in _CAPTION.findall(captions) if c != "grey"]
        if seen:
            colour, span = seen[0][1], f"{seen[0][0]}-{_next_second(seen[-1][0])}"
        else:  # nothing seen: a guess, in the same format
            colour = rng.choice(self.options)
            lines = _CAPTION.findall(captions)
            span = f"{lines[0][0]}-{_next_second(lines[-1][0])}" if lines else "00:00-00:01"
        letter = "ABCDEFGH"[self.options.index(colour)] if colour in self.options else rng.choice("ABCD")
        return (f"<time>{span}</time> <caption>the screen flashes {colour}</caption> "
                f"<think>The flash is {colour}, option {letter}.</think> <answer>{letter}</answer>")


def _next_second(mmss: str) -> str:
    mm, ss = (int(x) for x in mmss.split(":"))
    t = mm * 60 + ss + 1
    return f"{t // 60:02d}:{t % 60:02d}"


_HIT = re.compile(r'^\d+\. (\{"start": "[\d:.]+", "end": "[\d:.]+"\})', re.M)
_SHOWN = re.compile(r"^(\d{2}:\d{2}) a (\w+) box is shown$", re.M)
_OPTION = re.compile(r"^([A-D])\. (\w+)$", re.M)


class RetrieveZoomPlanner:
    """Answers the glimpse task (engine/data/glimpse.py) in caption space, as VideoThinker's agents do.

    Plan: clip_retrieval for the coloured box, then caption_zoom (grounded to frame_zoom) on the best hit,
    its span copied verbatim from the retrieval result; when that look shows no box, zoom the next hit;
    answer from what the look showed. With temperature T it first wanders with probability T/2 (a look at a
    random window, which shows nothing), then recovers by retrieving, so the kept trajectories also teach
    what to do after a look that missed. A look that found nothing ends in a guess, which rejection
    sampling drops.
    """

    def __init__(self, min_duration_s: float, temperature: float = 0.7, zoom_frames: int = 8,
                 query: str = "colored box"):
        self.min_duration_s = min_duration_s  # every clip lasts at least this long: where a wandering look may go
        self.temperature, self.zoom_frames, self.query = temperature, zoom_frames, query

    def act(self, messages: list[dict], seed: int) -> str:
        rng = random.Random(seed)
        tools = [m["content"] for m in messages if m["role"] == "tool"]
        question = next(m["content"] for m in messages if m["role"] == "user")
        looked = [t.split("\n", 1)[0] for t in tools if t.startswith("caption_zoom")]  # "caption_zoom a-b:"
        seen = [s for t in tools if t.startswith("caption_zoom") for s in _SHOWN.findall(t)]
        if seen:
            return self._answer(question, seen)
        if not tools and rng.random() < self.temperature / 2:
            start = rng.randrange(0, max(1, int(self.min_duration_s) - 2))
            return self._zoom(json.dumps({"start": format_time(start), "end": format_time(start + 2)}))
        if not any(t.startswith("clip_retrieval") for t in tools):
            return format_tool_call(ToolCall("clip_retrieval", {"query": self.query, "topk": 3}))
        hits = [h for t in tools if t.startswith("clip_retrieval") for h in _HIT.findall(t)]
        fresh = [h for h in hits if not any(json.loads(h)["start"] in head for head in looked)]
        return self._zoom(fresh[0]) if fresh else self._answer(question, [], rng)

    def _zoom(self, span_json: str) -> str:
        # The span is the retrieval line's own JSON, so the call repeats it verbatim (the copy a small model learns).
        args = {**json.loads(span_json), "num_frames": self.zoom_frames}
        return format_tool_call(ToolCall("caption_zoom", args))

    def _answer(self, question: str, seen: list[tuple[str, str]], rng: random.Random | None = None) -> str:
        listed = _OPTION.findall(question)
        options = {c: letter for letter, c in listed}
        if seen:
            colour, span = seen[0][1], f"{seen[0][0]}-{_next_second(seen[-1][0])}"
        else:
            colour, span = (rng or random.Random(0)).choice(sorted(options) or ["red"]), "00:00-00:02"
        if not options:  # a grounding question: the span is the answer
            return (f"<time>{span}</time> <caption>a {colour} box</caption> "
                    f"<think>The box shows over {span}.</think> <answer>{span}</answer>")
        letter = options.get(colour, "A")
        return (f"<time>{span}</time> <caption>a {colour} box</caption> "
                f"<think>{scan_options(listed, colour)}</think> <answer>{letter}</answer>")
