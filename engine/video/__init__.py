"""engine.video: GPU (DALI) / CPU (PyAV) decoding, the Qwen2.5-VL frame policy, on-device preprocessing
and a group-shared frame cache."""
from engine.errors import VideoDecodeError, VideoRequestError
from engine.video.cache import CacheStats, FrameCache
from engine.video.policy import FramePolicy, smart_resize
from engine.video.service import VideoService
from engine.video.types import Clip, VideoMeta

__all__ = ["VideoService", "FramePolicy", "VideoMeta", "Clip", "VideoDecodeError", "VideoRequestError",
           "FrameCache", "CacheStats", "smart_resize"]
