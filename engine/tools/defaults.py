"""The default tool set: frame_zoom, spatial_zoom and clip_retrieval."""
from __future__ import annotations

from engine.tools.registry import ToolRegistry
from engine.tools.retrieval import ClipIndex, ClipRetrievalTool
from engine.tools.video_tools import MAX_ZOOM_FRAMES, FrameZoomTool, SpatialZoomTool


def default_registry(clip_index: ClipIndex | None = None, max_zoom_frames: int = MAX_ZOOM_FRAMES) -> ToolRegistry:
    """frame_zoom (at most `max_zoom_frames` frames a call), spatial_zoom, clip_retrieval. clip_retrieval uses
    ToolContext.clip_index when set, else `clip_index` (and answers with an error observation when neither exists)."""
    return ToolRegistry([FrameZoomTool(max_zoom_frames), SpatialZoomTool(), ClipRetrievalTool(clip_index)])
