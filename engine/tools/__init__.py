"""engine.tools: tool-call protocol, tool registry, video tools, observation rendering, Video-Thinker mode.

The agent loop's use, per turn (generation stopped on `</tool_call>`, the stop string kept):

    registry = default_registry()                      # tools=registry.schemas() in the chat template
    ctx = ToolContext(video_path, service, policy, duration_s, clip_index)
    obs = registry.execute(model_turn_text, ctx)       # parses, validates, runs; never raises
    ids, videos = observation_token_ids(obs, tokenizer, spec)    # append ids (loss mask 0)

Video-Thinker re-look (generation stopped on `</time>`): `relook_observation(text, ctx)` gives the
frames of the span just closed (None when there is none); `inline_video_token_ids` renders them.
"""
from engine.errors import ToolCallError
from engine.tools.protocol import ToolCall, parse_tool_call, format_tool_call
from engine.tools.registry import Tool, ToolRegistry, Observation, ToolContext
from engine.tools.defaults import default_registry
from engine.tools.video_tools import FrameZoomTool, SpatialZoomTool, MAX_ZOOM_FRAMES
from engine.tools.retrieval import ClipRetrievalTool, ClipIndex, ClipHit, CaptionClipIndex
from engine.tools.thinker import parse_thinker, ThinkerTrace, ThinkerSegment, relook_span, relook_observation
from engine.tools.render import observation_messages, observation_token_ids, inline_video_token_ids
from engine.tools.timefmt import parse_time, format_time

__all__ = [
    "CaptionClipIndex", "ClipHit", "ClipIndex", "ClipRetrievalTool", "FrameZoomTool",
    "MAX_ZOOM_FRAMES", "Observation", "SpatialZoomTool", "ThinkerSegment", "ThinkerTrace", "Tool",
    "ToolCall", "ToolContext", "ToolRegistry", "default_registry", "format_time",
    "format_tool_call", "inline_video_token_ids", "observation_messages", "observation_token_ids",
    "parse_thinker", "parse_time", "parse_tool_call", "relook_observation", "relook_span",
    "ToolCallError",
]
