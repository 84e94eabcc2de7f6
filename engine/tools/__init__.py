"""engine.tools: tool-call protocol, tool registry, video tools, observation rendering, Video-Thinker mode.

The agent loop's use, per turn (generation stopped on `</tool_call>`, the stop string kept):

    registry = default_registry()                      # tools=registry.schemas() in the chat template
    ctx = ToolContext(video_path, service, policy, duration_s, clip_index)
    obs = registry.execute(model_turn_text, ctx)       # parses, validates, runs; never raises
    ids, videos = observation_token_ids(obs, tokenizer, merge_size)  # append ids (loss mask 0)

Video-Thinker re-look (generation stopped on `</time>`): `relook_observation(text, ctx)` gives the
frames of the span just closed (None when there is none); `inline_video_token_ids` renders them.
"""
from importlib import import_module

# Resolved on first use (PEP 562): importing engine.tools stays cheap, and a module that
# `engine.rollout` imports can import engine.tools without a cycle (render.py needs rollout.batch).
_EXPORTS = {
    "ToolCall": "protocol",
    "parse_tool_call": "protocol",
    "format_tool_call": "protocol",
    "Tool": "registry",
    "ToolRegistry": "registry",
    "Observation": "registry",
    "ToolContext": "registry",
    "default_registry": "defaults",
    "FrameZoomTool": "video_tools",
    "SpatialZoomTool": "video_tools",
    "MAX_ZOOM_FRAMES": "video_tools",
    "ClipRetrievalTool": "retrieval",
    "ClipIndex": "retrieval",
    "ClipHit": "retrieval",
    "CaptionClipIndex": "retrieval",
    "parse_thinker": "thinker",
    "ThinkerTrace": "thinker",
    "ThinkerSegment": "thinker",
    "relook_span": "thinker",
    "relook_observation": "thinker",
    "observation_messages": "render",
    "observation_token_ids": "render",
    "inline_video_token_ids": "render",
    "parse_time": "timefmt",
    "format_time": "timefmt",
}
__all__ = sorted([*_EXPORTS, "ToolCallError"])


def __getattr__(name: str):
    if name == "ToolCallError":
        from engine.errors import ToolCallError

        return ToolCallError
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine.tools' has no attribute {name!r}")
    return getattr(import_module(f"engine.tools.{_EXPORTS[name]}"), name)


def __dir__():
    return __all__
