"""VideoService: probe, sample, temporal window and spatial crop of videos as Qwen2.5-VL / Qwen3-VL inputs."""
from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict
from dataclasses import asdict

import numpy as np
import torch

from engine.errors import VideoDecodeError, VideoRequestError
from engine.video.cache import FrameCache
from engine.video.dali_backend import DALI_CPU_CODECS, DALI_GPU_CODECS, DaliDecoder, dali_unavailable_reason
from engine.video.plan import plan_runs
from engine.video.policy import FramePolicy, second_per_grid_t, select_frames, target_size
from engine.video.preprocess import preprocess
from engine.video.probe import FileId, file_id, probe
from engine.video.spec import QWEN2_5_VL, VisionSpec
from engine.video.pyav_backend import decode_pyav
from engine.video.types import Clip, VideoMeta

VIDEO_BACKENDS = ("auto", "dali", "pyav")
_TIME_EPS = 1e-6  # frame times come from rational pts; absorb float noise at span edges


class VideoService:
    """Decodes frames once, keeps them in a shared LRU cache and returns model-ready clips.

    Rules for requests (each adjustment is stated in `Clip.notes`):
      * window(start_s, end_s): NaN/inf, end <= start, end <= 0 or start >= duration raise
        VideoRequestError; start < 0 is clamped to 0 and end > duration to the duration. Frames
        are those whose timestamps lie in [start_s, end_s]; a window shorter than one frame gives
        the frame on screen at start_s.
      * crop(time_s, bbox): time_s outside [0, duration] raises; the frame is the one on screen at
        time_s. bbox = (x0, y0, x1, y1) in 0..1; non-finite, empty/inverted, or entirely outside the
        frame raises; a box partly outside is clamped to the frame. The crop keeps source
        resolution and is resized by the policy like any frame.
    Thread-safe: tool workers may call one service from many threads. `Clip.frames` are the decoded
    frames at source resolution; the model sees them resized inside `pixel_values`.
    """

    def __init__(self, device: str | torch.device = "cpu", backend: str = "auto", cache_bytes: int = 2**30,
                 cache_lead_in: bool = True, wait_timeout_s: float = 300.0, spec: VisionSpec = QWEN2_5_VL):
        self.device = _parse_device(device)
        self.spec = spec  # the policy model's patch grid and pixel statistics
        if backend not in VIDEO_BACKENDS:
            raise VideoRequestError(f"unknown video backend {backend!r}; choose one of {', '.join(VIDEO_BACKENDS)}")
        self.backend = backend
        self._dali_reason = dali_unavailable_reason()
        if backend == "dali" and self._dali_reason is not None:
            raise VideoRequestError(f"backend 'dali' cannot work: {self._dali_reason}")
        self.cache = FrameCache(cache_bytes)
        # With the cache on, whole GOPs are decoded and cached (a seeking decoder passes through most
        # of each GOP anyway), so later windows of the group that land in those GOPs decode nothing.
        self.cache_lead_in = cache_lead_in and self.cache.enabled
        self.wait_timeout_s = wait_timeout_s
        self._lock = threading.Lock()
        self._metas: OrderedDict[FileId, VideoMeta] = OrderedDict()
        self._dali: DaliDecoder | None = None
        self._frames_decoded = 0
        self._frames_delivered = 0
        self._decode_calls = 0
        # Model-ready pixel values by (file, frames, crop, size), in a quarter of the frame budget: a group's
        # repeated tool windows are resized once, and a window being resized by one thread is waited for.
        self.inputs = FrameCache(self.cache.capacity_bytes // 4)

    # ---- public API -------------------------------------------------------------------------
    def probe(self, path: str) -> VideoMeta:
        return self._probe(str(path))[1]

    def sample(self, path: str, policy: FramePolicy | None = None) -> Clip:
        """The whole video, sampled uniformly by `policy.fps` within its frame bounds."""
        path = str(path)
        policy = policy or FramePolicy()
        fid, meta = self._probe(path)
        indices = select_frames(0, meta.num_frames - 1, meta.fps, policy)
        return self._clip(path, fid, meta, indices, policy, 0.0, meta.duration_s, ())

    def window(self, path: str, start_s: float, end_s: float, policy: FramePolicy | None = None) -> Clip:
        """Temporal zoom: frames only from [start_s, end_s], at real timestamps."""
        path = str(path)
        policy = policy or FramePolicy()
        fid, meta = self._probe(path)
        start, end, notes = _check_window(path, start_s, end_s, meta.duration_s)
        times = meta.frame_times_s
        first = bisect.bisect_left(times, start - _TIME_EPS)
        last = bisect.bisect_right(times, end + _TIME_EPS) - 1
        if first > last:  # window inside one frame's display interval
            first = last = max(bisect.bisect_right(times, start + _TIME_EPS) - 1, 0)
            notes += (f"window [{start:.3f}, {end:.3f}]s holds no frame start; using frame {first} on screen at {start:.3f}s",)
        indices = select_frames(first, last, meta.fps, policy)
        return self._clip(path, fid, meta, indices, policy, start, end, notes)

    def crop(self, path: str, time_s: float, bbox, policy: FramePolicy | None = None) -> Clip:
        """Spatial zoom: region `bbox` (x0, y0, x1, y1 in 0..1) of the frame on screen at `time_s`."""
        path = str(path)
        policy = policy or FramePolicy()
        fid, meta = self._probe(path)
        if not isinstance(time_s, (int, float)) or not math.isfinite(time_s):
            raise VideoRequestError(f"{path}: crop time must be a finite number, got {time_s!r}")
        if time_s < 0 or time_s > meta.duration_s:
            raise VideoRequestError(f"{path}: crop time {time_s}s is outside the video [0, {meta.duration_s:.3f}]s")
        index = max(bisect.bisect_right(meta.frame_times_s, time_s + _TIME_EPS) - 1, 0)
        box, notes = _check_bbox(path, bbox)
        x0 = min(int(math.floor(box[0] * meta.width)), meta.width - 1)
        y0 = min(int(math.floor(box[1] * meta.height)), meta.height - 1)
        x1 = max(int(math.ceil(box[2] * meta.width)), x0 + 1)
        y1 = max(int(math.ceil(box[3] * meta.height)), y0 + 1)
        return self._clip(path, fid, meta, [index], policy, meta.frame_times_s[index], meta.frame_times_s[index],
                          notes, pixel_box=(x0, y0, x1, y1), bbox=box)

    def backend_for(self, meta: VideoMeta) -> str:
        """'pyav', 'dali-cpu' or 'dali-mixed' for this file; VideoRequestError if the explicit choice cannot work."""
        codec = meta.codec
        dali_kind = "dali-mixed" if self.device.type == "cuda" else "dali-cpu"
        dali_codecs = DALI_GPU_CODECS if self.device.type == "cuda" else DALI_CPU_CODECS
        if self.backend == "pyav":
            return "pyav"
        if self.backend == "dali":
            if codec not in dali_codecs:
                where = "GPU (NVDEC)" if self.device.type == "cuda" else "CPU"
                raise VideoRequestError(
                    f"{meta.path}: backend 'dali' on {where} cannot decode codec {codec!r} "
                    f"(it decodes {', '.join(sorted(dali_codecs))}); use backend='pyav' or 'auto'")
            return dali_kind
        # auto: NVDEC through DALI on a GPU; on a CPU PyAV for every codec, because DALI's CPU decoder
        # measured 0.3-0.6x PyAV's frames/s on VP9/MJPEG here (bench/results/decode-cpu-2core.json).
        if self.device.type == "cuda" and self._dali_reason is None and codec in dali_codecs:
            return dali_kind
        return "pyav"

    def stats(self) -> dict:
        """Counters for metrics: cache hits/misses/bytes and decode work."""
        s = asdict(self.cache.stats())
        with self._lock:
            s.update(frames_decoded=self._frames_decoded, frames_delivered=self._frames_delivered,
                     decode_calls=self._decode_calls)
        inputs = self.inputs.stats()
        s["clips_reused"] = inputs.hits + inputs.shared
        return s

    # ---- internals --------------------------------------------------------------------------
    def _probe(self, path: str) -> tuple[FileId, VideoMeta]:
        fid = file_id(path)
        with self._lock:
            meta = self._metas.get(fid)
            if meta is not None:
                self._metas.move_to_end(fid)
                return fid, meta
        meta = probe(path)
        with self._lock:
            self._metas[fid] = meta
            while len(self._metas) > 4096:
                self._metas.popitem(last=False)
        return fid, meta

    def _decode(self, path: str, meta: VideoMeta, indices: list[int]) -> dict[int, torch.Tensor]:
        """Decode `indices` (and, with cache_lead_in, every frame decoded on the way) -> {index: frame}."""
        kind = self.backend_for(meta)
        ordered = sorted(set(indices))
        if kind == "pyav":
            arrays, work = decode_pyav(path, meta, ordered, keep_all=self.cache_lead_in)
            frames = {i: torch.from_numpy(a).to(self.device) for i, a in arrays.items()}
        else:
            with self._lock:
                if self._dali is None:
                    device_id = self.device.index or 0 if self.device.type == "cuda" else None
                    self._dali = DaliDecoder("mixed" if kind == "dali-mixed" else "cpu", device_id)
            # DALI decodes each run from its keyframe anyway; asking for the whole run costs only the copy.
            runs = plan_runs(ordered, meta.keyframes, meta.num_frames if self.cache_lead_in else None)
            ask = [i for r in runs for i in range(r.start, r.stop + 1)] if self.cache_lead_in else ordered
            batch = self._dali.decode(path, ask, self.device)
            if batch.shape[0] != len(ask):
                raise VideoDecodeError(f"{path}: DALI returned {batch.shape[0]} frames for {len(ask)} requested")
            frames = {i: batch[j].clone() for j, i in enumerate(ask)}
            work = sum(r.stop - r.start + 1 for r in runs)
        with self._lock:
            self._frames_decoded += work
            self._frames_delivered += len(ordered)
            self._decode_calls += 1
        return frames

    def _frames(self, path: str, fid: FileId, meta: VideoMeta, indices: list[int]) -> tuple[torch.Tensor, int, int]:
        size = (meta.height, meta.width)
        keys = [(fid, i, size) for i in indices]
        found, claimed, waiting = self.cache.acquire(keys)
        got = dict(found)
        try:
            if claimed:
                decoded = self._decode(path, meta, [k[1] for k in claimed])
                for k in claimed:
                    got[k] = decoded[k[1]]
                for i, frame in decoded.items():  # claimed frames and lead-ins alike
                    self.cache.put((fid, i, size), frame)
        finally:
            self.cache.release(claimed)
        shared: dict = {}
        missing: list = []
        if waiting:  # frames another thread is decoding right now: wait instead of decoding twice
            shared, missing = self.cache.collect(waiting, self.wait_timeout_s)
            got.update(shared)
            if missing:  # that decode failed or the frame was evicted already
                decoded = self._decode(path, meta, [k[1] for k in missing])
                got.update({k: decoded[k[1]] for k in missing})
        hits = len(found) + len(shared)
        frames = [got[k] for k in keys]
        if self.device.type == "cpu":  # numpy's copy; torch's threaded copy stalls on a loaded CPU
            return torch.from_numpy(np.stack([f.numpy() for f in frames])), hits, len(claimed) + len(missing)
        return torch.stack(frames), hits, len(claimed) + len(missing)

    def _clip(self, path: str, fid: FileId, meta: VideoMeta, indices: list[int], policy: FramePolicy,
              start_s: float, end_s: float, notes: tuple[str, ...], pixel_box=None, bbox=None) -> Clip:
        frames, hits, misses = self._frames(path, fid, meta, indices)
        if pixel_box is not None:
            x0, y0, x1, y1 = pixel_box
            frames = frames[:, y0:y1, x0:x1, :].contiguous()
        height, width = frames.shape[1], frames.shape[2]
        try:
            rh, rw = target_size(height, width, len(indices), policy, self.spec.factor)
        except VideoRequestError as e:
            raise VideoRequestError(f"{path}: {e}") from None
        key = (fid, tuple(indices), pixel_box, rh, rw)
        pixel_values = self._pixel_values(key, frames, rh, rw)
        gh, gw = rh // self.spec.patch_size, rw // self.spec.patch_size
        times = [meta.frame_times_s[i] for i in indices]
        return Clip(path=path, frames=frames, frame_indices=torch.tensor(indices, dtype=torch.int64),
                    timestamps_s=torch.tensor(times, dtype=torch.float64), pixel_values=pixel_values,
                    grid_thw=(pixel_values.shape[0] // (gh * gw), gh, gw),
                    second_per_grid_t=second_per_grid_t(times, meta.fps), resized_hw=(rh, rw),
                    start_s=start_s, end_s=end_s, backend=self.backend_for(meta), bbox=bbox, notes=notes,
                    cache_hits=hits, cache_misses=misses, key=(*key, self.spec.arch))

    def _pixel_values(self, key, frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The model input of `frames` resized to height x width: built once per key while cached."""
        found, claimed, waiting = self.inputs.acquire([key])
        if found:
            return found[key]
        if waiting:
            shared, _ = self.inputs.collect(waiting, self.wait_timeout_s)
            if shared:
                return shared[key]
        try:
            _, pixel_values, _ = preprocess(frames, height, width, self.spec)
            self.inputs.put(key, pixel_values)
        finally:
            self.inputs.release(claimed)
        return pixel_values


def _parse_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise VideoRequestError(f"bad video device {device!r} ({e})") from None
    if dev.type not in ("cpu", "cuda"):
        raise VideoRequestError(f"video device must be 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VideoRequestError(f"video device {device!r} requested but CUDA is not available")
    return dev


def _check_window(path: str, start_s, end_s, duration: float) -> tuple[float, float, tuple[str, ...]]:
    for name, v in (("start_s", start_s), ("end_s", end_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise VideoRequestError(f"{path}: window {name} must be a finite number, got {v!r}")
    start, end = float(start_s), float(end_s)
    if end <= start:
        raise VideoRequestError(f"{path}: window [{start}, {end}]s is empty or inverted")
    if end <= 0 or start >= duration:
        raise VideoRequestError(f"{path}: window [{start}, {end}]s lies outside the video [0, {duration:.3f}]s")
    notes: tuple[str, ...] = ()
    if start < 0:
        notes += (f"window start {start}s clamped to 0s",)
        start = 0.0
    if end > duration:
        notes += (f"window end {end}s clamped to the video duration {duration:.3f}s",)
        end = duration
    return start, end, notes


def _check_bbox(path: str, bbox) -> tuple[tuple[float, float, float, float], tuple[str, ...]]:
    try:
        box = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise VideoRequestError(f"{path}: bbox must be 4 numbers (x0, y0, x1, y1), got {bbox!r}") from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise VideoRequestError(f"{path}: bbox must be 4 finite numbers (x0, y0, x1, y1) in 0..1, got {bbox!r}")
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise VideoRequestError(f"{path}: bbox {box} is empty or inverted (need x0 < x1 and y0 < y1)")
    if x1 <= 0 or y1 <= 0 or x0 >= 1 or y0 >= 1:
        raise VideoRequestError(f"{path}: bbox {box} lies outside the frame [0, 1] x [0, 1]")
    clamped = (max(x0, 0.0), max(y0, 0.0), min(x1, 1.0), min(y1, 1.0))
    notes = (f"bbox {box} clamped to the frame: {clamped}",) if clamped != box else ()
    return clamped, notes
