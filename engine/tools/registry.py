"""Tool base class, argument checking, observations, and the registry that runs calls without ever raising."""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, ToolCallError, VideoDecodeError, VideoRequestError, VthinkError
from engine.tools.protocol import ToolCall, parse_tool_call
from engine.tools.timefmt import short_repr, parse_time
from engine.video import Clip, FramePolicy, VideoService

if TYPE_CHECKING:
    from engine.tools.retrieval import ClipIndex

MAX_ERROR_CHARS = 600  # an error observation must not flood the context with echoed model output


@dataclass
class Observation:
    """What a tool returns to the model.

    text: what the model reads (the served time span, frame times, notes on any clamping, or the error).
    clips: video the model sees after the text, in order (frame_zoom / spatial_zoom frames).
    error: None on success; otherwise a one-line description (also contained in `text`).
    duration_s: wall time the tool took, set by ToolRegistry.execute.
    """

    text: str
    clips: list[Clip] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0


@dataclass
class ToolContext:
    """Everything a tool needs about the sample being rolled out."""

    video_path: str
    video_service: VideoService
    frame_policy: FramePolicy
    duration_s: float
    clip_index: ClipIndex | None = None


class Tool:
    """A tool the model can call. Subclasses set name, description, parameters (JSON schema of an
    object), and implement `convert` (checked JSON values -> typed args) and `run`.

    `validate` first checks the arguments against `parameters` (object, no unknown keys, required
    keys present, JSON types, array lengths), then calls `convert`; every failure is a ToolCallError
    naming the tool, the argument and what was expected.
    """

    name: str = ""
    description: str = ""
    parameters: dict = {"type": "object", "properties": {}, "required": []}

    def schema(self) -> dict:
        """The function description listed in the system prompt (Qwen/Hermes `<tools>` entry)."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": copy.deepcopy(self.parameters)}}

    def validate(self, arguments: Any) -> Any:
        if not isinstance(arguments, dict):
            raise ToolCallError(f"{self.name}: arguments must be a JSON object, got {type(arguments).__name__}")
        props: dict = self.parameters.get("properties", {})
        unknown = [k for k in arguments if k not in props]
        if unknown:
            raise ToolCallError(f"{self.name}: unknown argument(s) {', '.join(short_repr(k, 30) for k in unknown[:5])}; "
                                f"it takes {', '.join(props) or 'no arguments'}")
        missing = [k for k in self.parameters.get("required", []) if k not in arguments or arguments[k] is None]
        if missing:
            raise ToolCallError(f"{self.name}: missing required argument(s) {', '.join(missing)}")
        for key, value in arguments.items():
            if value is not None:
                _check_type(self.name, key, value, props[key])
        return self.convert({k: v for k, v in arguments.items() if v is not None})

    def convert(self, arguments: dict) -> Any:
        return arguments

    def run(self, args: Any, ctx: ToolContext) -> Observation:
        raise NotImplementedError


def _check_type(tool: str, key: str, value, schema: dict) -> None:
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if kinds and not any(_is_json_type(value, k) for k in kinds):
        described = schema.get("description", " or ".join(kinds))
        raise ToolCallError(f"{tool}: argument '{key}' must be {' or '.join(kinds)} ({described}), "
                            f"got {_json_kind(value)} {short_repr(value)}")
    if isinstance(value, list) and (len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value))):
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        count = f"exactly {lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
        raise ToolCallError(f"{tool}: argument '{key}' must have {count} items, got {len(value)}")
    if "items" in schema and isinstance(value, list):
        for i, item in enumerate(value):
            _check_type(tool, f"{key}[{i}]", item, schema["items"])


def _is_json_type(value, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    return False


def _json_kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def arg_time(tool: str, arguments: dict, key: str) -> float:
    return parse_time(arguments[key], f"{tool}: argument '{key}'")


def arg_int(tool: str, arguments: dict, key: str, default: int | None = None) -> int | None:
    if key not in arguments:
        return default
    return int(arguments[key])  # _check_type already ensured an integral number


class ToolRegistry:
    """Named tools; `execute` turns a call (or a raw model turn) into an Observation and never raises."""

    def __init__(self, tools=()):
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if not isinstance(tool, Tool) or not isinstance(tool.name, str) or not tool.name:
            raise ConfigError("tools", f"a tool must be a Tool with a non-empty name, got {tool!r}")
        if tool.name in self._tools:
            raise ConfigError("tools", f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool:
        if name not in self._tools:
            raise ToolCallError(f"unknown tool {short_repr(name, 40)}; available tools: {', '.join(self._tools) or 'none'}")
        return self._tools[name]

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self) -> list[dict]:
        """Tool descriptions to pass as `tools=` to the chat template (rendered inside `<tools>`)."""
        return [t.schema() for t in self._tools.values()]

    def execute(self, call: ToolCall | str, ctx: ToolContext) -> Observation:
        """Run `call` (a ToolCall, or the model turn text to parse first) -> Observation.

        Every failure (unparsable call, unknown tool, bad arguments, a request the video service
        refuses, an unreadable video, a bug in a tool) becomes an error Observation whose text tells
        the model what went wrong.
        """
        t0 = time.perf_counter()
        name = None
        try:
            if isinstance(call, str):
                call = parse_tool_call(call)
            if not isinstance(call, ToolCall):
                raise ToolCallError(f"expected a ToolCall or the model's text, got {type(call).__name__}")
            name = call.name
            tool = self.get(call.name)
            args = tool.validate(call.arguments)
            obs = tool.run(args, ctx)
            if not isinstance(obs, Observation):
                raise TypeError(f"tool {name} returned {type(obs).__name__}, not an Observation")
        except ToolCallError as e:
            obs = self._error("invalid tool call", e, ctx, name)
        except VideoRequestError as e:
            obs = self._error("the video request cannot be served", e, ctx, name)
        except VideoDecodeError as e:
            obs = self._error("the video could not be decoded", e, ctx, name)
        except VthinkError as e:
            obs = self._error("tool failed", e, ctx, name)
        except Exception as e:  # a tool bug must not kill the batch: report it as an observation
            obs = self._error("internal tool error", e, ctx, name, with_type=True)
        obs.duration_s = time.perf_counter() - t0
        return obs

    def _error(self, kind: str, e: BaseException, ctx, name: str | None, with_type: bool = False) -> Observation:
        try:
            message = str(e)
        except Exception:
            message = ""
        path = getattr(ctx, "video_path", None)
        if isinstance(path, str) and path:  # the model has no use for our file paths
            if message.startswith(path + ": "):
                message = message[len(path) + 2:]
            message = message.replace(path, os.path.basename(path))
        if with_type:
            message = f"{type(e).__name__}: {message}"
        if len(message) > MAX_ERROR_CHARS:
            message = message[:MAX_ERROR_CHARS] + "..."
        named = name and name in self._tools and not message.startswith(f"{name}:")
        error = f"{kind}{f' ({name})' if named else ''}: {message}".rstrip(". ")
        hint = ""
        if self._tools and not (name and name in self._tools) and "available tools" not in message:
            hint = f" Available tools: {', '.join(self._tools)}."
        return Observation(text=f"Error: {error}.{hint}", clips=[], error=error)
