"""The default tool set: frame_zoom, spatial_zoom and clip_retrieval."""
from __future__ import annotations

from engine.tools.registry import ToolRegistry
from engine.tools.retrieval import ClipIndex, ClipRetrievalTool
from engine.tools.video_tools import FrameZoomTool, SpatialZoomTool


def default_registry(clip_index: ClipIndex | None = None) -> ToolRegistry:
    """frame_zoom, spatial_zoom, clip_retrieval. clip_retrieval uses ToolContext.clip_index when set,
    else `clip_index` (and answers with an error observation when neither exists)."""
    return ToolRegistry([FrameZoomTool(), SpatialZoomTool(), ClipRetrievalTool(clip_index)])
