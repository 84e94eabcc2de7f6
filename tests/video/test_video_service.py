"""VideoService on real encoded files: the exact frames, times and patches for sample / window / crop."""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from engine.data.synthetic import expected_frame
from engine.video import Clip, FramePolicy, VideoService
from engine.video.dali_backend import dali_unavailable_reason
from video_testlib import frame_numbers, make_clip, mean_abs_error, qwen_indices

HAVE_DALI = dali_unavailable_reason() is None
BACKENDS = {"h264": ["pyav"], "vp9": ["pyav", "dali"], "mjpeg": ["pyav", "dali"]}
CASES = [(c, b) for c, bs in BACKENDS.items() for b in bs]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("video_service")
    out = {c: make_clip(d, c) for c in BACKENDS}
    out["h264_odd"] = make_clip(d, "h264", width=202, height=114, num_frames=24)
    out["mjpeg_odd"] = make_clip(d, "mjpeg", width=161, height=121, num_frames=24)
    out["vp9_odd"] = make_clip(d, "vp9", width=161, height=121, num_frames=24)
    return out


def _service(backend):
    if backend == "dali" and not HAVE_DALI:
        pytest.skip(dali_unavailable_reason())
    return VideoService(device="cpu", backend=backend, cache_bytes=0)


def _check_clip(clip: Clip, rec, indices, policy):
    assert clip.frame_indices.tolist() == indices
    assert frame_numbers(clip.frames) == indices  # the decoded pixels say which frame they are
    for f, i in zip(clip.frames, indices):
        assert mean_abs_error(f, rec, i) < 6.0
    assert clip.timestamps_s.tolist() == pytest.approx([i / rec.fps for i in indices], abs=1e-9)
    n = len(indices)
    t, h, w = clip.grid_thw
    assert t == math.ceil(n / 2) and (h * 14, w * 14) == clip.resized_hw
    assert clip.resized_hw[0] % 28 == 0 and clip.resized_hw[1] % 28 == 0
    assert clip.resized_hw[0] * clip.resized_hw[1] <= policy.max_pixels
    assert clip.pixel_values.shape == (t * h * w, 3 * 2 * 14 * 14) and clip.pixel_values.dtype == torch.float32
    expected_spgt = 2 * (indices[-1] - indices[0]) / rec.fps / (n - 1) if n > 1 else 2 / rec.fps
    assert clip.second_per_grid_t == pytest.approx(expected_spgt)


@pytest.mark.parametrize("codec,backend", CASES)
def test_probe(clips, codec, backend):
    rec = clips[codec]
    meta = _service(backend).probe(rec.path)
    assert (meta.num_frames, meta.width, meta.height, meta.codec) == (64, 160, 120, codec)
    assert meta.fps == pytest.approx(8.0) and meta.duration_s == pytest.approx(8.0)
    assert meta.frame_times_s[:3] == pytest.approx((0.0, 0.125, 0.25))


@pytest.mark.parametrize("codec,backend", CASES)
def test_sample_whole_video(clips, codec, backend):
    rec = clips[codec]
    policy = FramePolicy(fps=2.0, min_frames=4, max_frames=16)
    clip = _service(backend).sample(rec.path, policy)
    expected = qwen_indices(0, 63, 8.0, 2.0, 4, 16)
    assert len(expected) == 16
    _check_clip(clip, rec, expected, policy)
    assert clip.backend == ("pyav" if backend == "pyav" else "dali-cpu")
    assert (clip.start_s, clip.end_s, clip.notes) == (0.0, pytest.approx(8.0), ())


@pytest.mark.parametrize("codec,backend", CASES)
@pytest.mark.parametrize("span", [(0.0, 1.5), (3.0, 4.9), (6.2, 8.0)], ids=["start", "middle", "end"])
def test_window_returns_only_frames_inside(clips, codec, backend, span):
    rec = clips[codec]
    policy = FramePolicy(fps=4.0, min_frames=4, max_frames=8)
    clip = _service(backend).window(rec.path, *span, policy)
    inside = [i for i in range(64) if span[0] - 1e-9 <= i / 8 <= span[1] + 1e-9]
    expected = qwen_indices(inside[0], inside[-1], 8.0, 4.0, 4, 8)
    _check_clip(clip, rec, expected, policy)
    assert all(span[0] <= t <= span[1] for t in clip.timestamps_s.tolist())
    # M-RoPE needs the real place in the video: the first timestamp is the window's, not 0.
    assert clip.timestamps_s[0].item() == pytest.approx(inside[0] / 8)


def test_dali_and_pyav_agree(clips):
    if not HAVE_DALI:
        pytest.skip(dali_unavailable_reason())
    for codec in ("vp9", "mjpeg"):
        rec = clips[codec]
        a = VideoService(backend="pyav", cache_bytes=0).window(rec.path, 1.0, 5.0)
        b = VideoService(backend="dali", cache_bytes=0).window(rec.path, 1.0, 5.0)
        assert a.frame_indices.tolist() == b.frame_indices.tolist()
        assert a.grid_thw == b.grid_thw and a.second_per_grid_t == b.second_per_grid_t
        # Both decode with libavcodec; YUV->RGB conversion differs (chroma upsampling at colour edges,
        # measured: mean 0.2-0.8, ~1% of values off by more than 8).
        diff = (a.frames.float() - b.frames.float()).abs()
        assert diff.mean().item() < 1.5 and (diff > 8).float().mean().item() < 0.03, codec
        assert (a.pixel_values - b.pixel_values).abs().mean().item() < 0.02


def test_window_clamps_past_the_end_and_says_so(clips):
    rec = clips["h264"]
    clip = VideoService(backend="pyav").window(rec.path, 7.0, 20.0, FramePolicy(fps=8.0, max_frames=8))
    assert clip.end_s == pytest.approx(8.0) and any("clamped" in n for n in clip.notes)
    assert clip.frame_indices.tolist() == list(range(56, 64))
    assert frame_numbers(clip.frames) == list(range(56, 64))
    clip = VideoService(backend="pyav").window(rec.path, -2.0, 0.5, FramePolicy(fps=8.0))
    assert clip.start_s == 0.0 and any("start" in n for n in clip.notes)
    assert clip.frame_indices.tolist() == qwen_indices(0, 4, 8.0, 2.0, 4, 16) == [0, 1, 3, 4]


def test_window_shorter_than_a_frame_gives_the_frame_on_screen(clips):
    rec = clips["h264"]
    clip = VideoService(backend="pyav").window(rec.path, 2.01, 2.05)
    assert clip.frame_indices.tolist() == [16] and frame_numbers(clip.frames) == [16]
    assert clip.grid_thw[0] == 1 and clip.notes
    pv = clip.pixel_values.view(1, -1, 3, 2, 14, 14)
    assert torch.equal(pv[:, :, :, 0], pv[:, :, :, 1])  # the single frame fills both temporal slots


@pytest.mark.parametrize("backend", ["pyav", "dali"])
def test_crop_returns_the_region_at_time(clips, backend):
    rec = clips["mjpeg"]
    svc = _service(backend)
    bbox = (0.25, 0.1, 0.75, 0.6)
    clip = svc.crop(rec.path, 3.3, bbox, FramePolicy(max_pixels=64 * 28 * 28))
    index = 26  # on screen at 3.3 s: 3.25 s
    assert clip.frame_indices.tolist() == [index]
    assert clip.frames.shape == (1, 60, 80, 3)  # rows 12..72, cols 40..120 of 120x160
    ref = expected_frame(rec, index)[12:72, 40:120].astype(np.float32)
    assert np.abs(clip.frames[0].numpy().astype(np.float32) - ref).mean() < 6.0
    assert clip.bbox == bbox and clip.grid_thw[0] == 1
    # Partly outside -> clamped and noted.
    clip = svc.crop(rec.path, 3.3, (0.5, 0.5, 1.3, 1.2))
    assert clip.frames.shape == (1, 60, 80, 3) and clip.notes


@pytest.mark.parametrize("name", ["h264_odd", "mjpeg_odd", "vp9_odd"])
def test_odd_sizes(clips, name):
    rec = clips[name]
    for backend in ("pyav", "dali") if not name.startswith("h264") and HAVE_DALI else ("pyav",):
        policy = FramePolicy(fps=8.0, max_frames=6, max_pixels=32 * 28 * 28)
        clip = VideoService(backend=backend, cache_bytes=0).sample(rec.path, policy)
        assert clip.frames.shape[1:] == (rec.height, rec.width, 3)
        _check_clip(clip, rec, qwen_indices(0, 23, 8.0, 8.0, 4, 6), policy)


def test_pixel_values_equal_hf_processor_on_the_decoded_frames(clips):
    rec = clips["h264"]
    policy = FramePolicy(fps=1.0, min_frames=4, max_frames=4, max_pixels=48 * 28 * 28)
    clip = VideoService(backend="pyav").sample(rec.path, policy)
    proc = Qwen2VLImageProcessorPil(min_pixels=policy.min_pixels, max_pixels=policy.max_pixels)
    t, h, w = clip.grid_thw
    ours = clip.pixel_values.view(t, h * w, 3, 2, 14, 14)
    for k, frame in enumerate(clip.frames):
        ref = proc([Image.fromarray(frame.numpy())], return_tensors="pt")["pixel_values"]
        assert torch.equal(ours[k // 2, :, :, k % 2], ref.view(h * w, 3, 2, 14, 14)[:, :, 0])


def test_total_pixels_budget_shrinks_frames(clips):
    rec = clips["h264"]
    big = VideoService(backend="pyav").sample(rec.path, FramePolicy(max_frames=16))
    small = VideoService(backend="pyav").sample(rec.path, FramePolicy(max_frames=16, total_pixels=16 * 6 * 28 * 28))
    assert big.frame_indices.tolist() == small.frame_indices.tolist()
    hs, ws = small.resized_hw
    # qwen-vl-utils: per-frame cap = max(min(max_pixels, total / T * 2), 1.05 * min_pixels)
    cap = max(min(128 * 28 * 28, 16 * 6 * 28 * 28 / 16 * 2), 1.05 * FramePolicy().min_pixels)
    assert hs * ws <= cap < big.resized_hw[0] * big.resized_hw[1]


def test_seeking_decodes_only_the_window(clips):
    """A window at the end decodes from the keyframe before it, not the whole file."""
    rec = clips["h264"]
    svc = VideoService(backend="pyav", cache_bytes=0)
    svc.window(rec.path, 7.0, 8.0, FramePolicy(fps=8.0, max_frames=8))
    assert svc.stats()["frames_decoded"] <= 16 + 2  # one 2 s GOP (16 frames), plus decoder slack


def test_auto_picks_pyav_on_cpu(clips):
    svc = VideoService(device="cpu", backend="auto")
    for codec in BACKENDS:
        assert svc.backend_for(svc.probe(clips[codec].path)) == "pyav"
