"""engine.video: GPU (DALI) / CPU (PyAV) decoding, the Qwen2.5-VL frame policy, on-device preprocessing
and a group-shared frame cache.

Names are imported on first use (PEP 562): `engine.video.spec`, which the config reads its list of
architectures from, then costs no torch import.
"""
from engine.errors import VideoDecodeError, VideoRequestError
from engine.lazy import lazy_attributes

_HOME = {"CacheStats": "cache", "FrameCache": "cache", "FramePolicy": "policy", "smart_resize": "policy",
         "VideoService": "service", "Clip": "types", "VideoMeta": "types"}
__all__ = ["VideoService", "FramePolicy", "VideoMeta", "Clip", "VideoDecodeError", "VideoRequestError",
           "FrameCache", "CacheStats", "smart_resize"]


__getattr__ = lazy_attributes(__name__, _HOME)
