"""GPU paths: DALI NVDEC decoding (`mixed`) and on-device preprocessing agree with the CPU paths."""
import pytest
import torch

from engine.video import FramePolicy, VideoService
from engine.video.preprocess import preprocess
from video_testlib import frame_numbers, make_clip

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def recs(tmp_path_factory):
    d = tmp_path_factory.mktemp("video_gpu")
    return {c: make_clip(d, c, width=320, height=240, num_frames=64) for c in ("h264", "vp9", "mjpeg")}


@pytest.mark.parametrize("codec", ["h264", "vp9", "mjpeg"])
def test_dali_gpu_returns_the_same_frames_as_pyav(recs, codec):
    rec = recs[codec]
    gpu = VideoService(device="cuda", backend="dali", cache_bytes=0)
    cpu = VideoService(device="cpu", backend="pyav", cache_bytes=0)
    for call in (lambda s: s.sample(rec.path), lambda s: s.window(rec.path, 2.0, 5.0),
                 lambda s: s.crop(rec.path, 3.0, (0.2, 0.2, 0.8, 0.8))):
        a, b = call(gpu), call(cpu)
        assert a.backend == "dali-mixed" and a.frames.is_cuda and a.pixel_values.is_cuda
        assert a.frame_indices.tolist() == b.frame_indices.tolist()
        if a.frames.shape[1:3] == (rec.height, rec.width):
            assert frame_numbers(a.frames) == a.frame_indices.tolist()
        diff = (a.frames.cpu().float() - b.frames.float()).abs()
        assert diff.mean().item() < 2.0  # NVDEC vs libavcodec colour conversion


def test_preprocess_on_gpu_is_bit_identical_to_cpu():
    frames = torch.randint(0, 256, (4, 240, 320, 3), dtype=torch.uint8)
    r_cpu, p_cpu, g_cpu = preprocess(frames, 196, 252)
    r_gpu, p_gpu, g_gpu = preprocess(frames.cuda(), 196, 252)
    assert g_cpu == g_gpu and torch.equal(r_cpu, r_gpu.cpu()) and torch.equal(p_cpu, p_gpu.cpu())


def test_gpu_cache_shares_frames_across_a_group(recs):
    svc = VideoService(device="cuda", backend="auto", cache_bytes=2**28)
    for g in range(8):
        svc.window(recs["h264"].path, 1.0 + 0.25 * g, 4.0 + 0.25 * g, FramePolicy(fps=2.0))
    s = svc.stats()
    assert s["hits"] > s["misses"] and s["frames_decoded"] <= 64
