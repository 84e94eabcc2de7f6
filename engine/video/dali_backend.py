"""NVIDIA DALI decoding of chosen frames: NVDEC on a GPU (`mixed`), libavcodec on CPU (VP8/VP9/MJPEG)."""
from __future__ import annotations

import threading

import numpy as np
import torch

from engine.errors import VideoDecodeError, VideoRequestError

# Codecs each DALI backend decodes (DALI 2.4 `fn.decoders.video` documentation), by FFmpeg name.
DALI_CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
DALI_GPU_CODECS = frozenset({"vp8", "vp9", "mjpeg", "av1", "mpeg4", "h264", "hevc"})


def dali_unavailable_reason() -> str | None:
    """None when DALI imports, else why not."""
    try:
        import nvidia.dali  # noqa: F401
    except Exception as e:  # ImportError, or a broken install raising anything
        return f"nvidia-dali is not importable ({type(e).__name__}: {e})"
    return None


class DaliDecoder:
    """Decodes frame lists with `fn.decoders.video(frames=...)`; only the requested frames (and the
    GOP lead-in DALI needs) are decoded. One pipeline per calling thread: DALI pipelines are not
    thread-safe, and a pipeline that raised is rebuilt."""

    def __init__(self, device: str, device_id: int | None = None, num_threads: int = 1):
        if device not in ("cpu", "mixed"):
            raise VideoRequestError(f"DALI decoder device must be 'cpu' or 'mixed', got {device!r}")
        if (reason := dali_unavailable_reason()) is not None:
            raise VideoRequestError(f"backend 'dali' cannot work: {reason}")
        self.device = device
        self.device_id = device_id if device == "mixed" else None
        self.num_threads = num_threads
        self._local = threading.local()

    @property
    def codecs(self) -> frozenset[str]:
        return DALI_GPU_CODECS if self.device == "mixed" else DALI_CPU_CODECS

    def _pipeline(self):
        pipe = getattr(self._local, "pipe", None)
        if pipe is None:
            from nvidia.dali import fn, pipeline_def, types

            device = self.device

            @pipeline_def(batch_size=1, num_threads=self.num_threads, device_id=self.device_id,
                          prefetch_queue_depth=1, exec_dynamic=True)
            def decode_pipe():
                encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1, device="cpu")
                frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1, device="cpu")
                return fn.decoders.video(encoded, device=device, frames=frames)

            pipe = decode_pipe()
            pipe.build()
            self._local.pipe = pipe
        return pipe

    def decode(self, path: str, indices: list[int], torch_device: torch.device) -> torch.Tensor:
        """uint8 [len(indices), H, W, 3] RGB on `torch_device`, in the order of `indices`."""
        try:
            encoded = np.fromfile(path, dtype=np.uint8)
        except OSError as e:
            raise VideoDecodeError(f"{path}: cannot read ({e.strerror})") from None
        pipe = self._pipeline()
        try:
            pipe.feed_input("encoded", [encoded])
            pipe.feed_input("frames", [np.asarray(indices, dtype=np.int32)])
            (out,) = pipe.run()
        except RuntimeError as e:
            self._local.pipe = None  # a failed DALI pipeline is not reusable
            lines = [m.strip() for m in str(e).splitlines() if m.strip()]
            # DALI wraps the cause in pipeline boilerplate; keep the assertion / error line.
            detail = next((m for m in lines if m.startswith(("Assert", "Error")) or "not supported" in m),
                          lines[-1] if lines else type(e).__name__)
            raise VideoDecodeError(f"{path}: DALI {self.device} decode failed: {detail[:300]}") from None
        if self.device == "mixed":
            from nvidia.dali.plugin.pytorch import feed_ndarray

            dense = out.as_tensor()
            result = torch.empty(dense.shape(), dtype=torch.uint8, device=torch_device)
            feed_ndarray(dense, result, cuda_stream=torch.cuda.current_stream(torch_device))
            # as_tensor() of a one-sample batch is [1, F, H, W, C]
            return result.reshape(len(indices), *result.shape[-3:])
        array = np.array(out.as_tensor()) if hasattr(out, "as_tensor") else np.array(out[0])
        return torch.from_numpy(array.reshape(len(indices), *array.shape[-3:])).to(torch_device)
