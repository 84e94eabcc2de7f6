"""Bad input never hangs, crashes or leaks a file handle: it raises a typed error naming file and problem."""
import gc
import math
import os
import threading

import av
import numpy as np
import pytest

from engine.video import FramePolicy, VideoDecodeError, VideoRequestError, VideoService
from engine.video.dali_backend import dali_unavailable_reason
from video_testlib import make_clip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("video_bad")
    good = {c: make_clip(d, c, num_frames=32) for c in ("h264", "vp9", "mjpeg")}
    f = {"good_" + c: r.path for c, r in good.items()}
    f["missing"] = d / "nope.mp4"
    (d / "empty.mp4").write_bytes(b"")
    f["empty"] = d / "empty.mp4"
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    f["random"] = d / "random.mp4"
    for c, r in good.items():  # cut at 60%: mp4 loses its index, webm/avi lose frames
        data = r.path.read_bytes()
        p = d / f"trunc_{c}{r.path.suffix}"
        p.write_bytes(data[: int(len(data) * 0.6)])
        f["trunc_" + c] = p
    with av.open(str(d / "audio.mp4"), "w") as c:  # audio only
        s = c.add_stream("aac", rate=16000)
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.float32), format="fltp", layout="mono")
        fr.sample_rate = 16000
        for p in s.encode(fr):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    f["audio"] = d / "audio.mp4"
    # An AVI whose fourcc names no codec FFmpeg knows.
    (d / "unknown.avi").write_bytes(good["mjpeg"].path.read_bytes().replace(b"MJPG", b"ZQZQ"))
    f["unsupported"] = d / "unknown.avi"
    # Y4M headers are text, so a stream with zero frames or absurd dimensions is easy to write.
    (d / "zero.y4m").write_bytes(b"YUV4MPEG2 W64 H64 F8:1 C420jpeg\n")
    f["zero_frames"] = d / "zero.y4m"
    (d / "wide.y4m").write_bytes(b"YUV4MPEG2 W20000 H64 F8:1 C420jpeg\nFRAME\n" + bytes(64))
    f["absurd"] = d / "wide.y4m"
    (d / "adir.mp4").mkdir()
    f["directory"] = d / "adir.mp4"
    return f


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _run_bounded(fn, timeout_s=60.0):
    """Run fn in a thread; fail (instead of hanging CI) if it does not return in time."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout_s)
    assert not t.is_alive(), "video call hung"
    if "error" in box:
        raise box["error"]
    return box.get("value")


BAD_FILES = {
    "missing": "not found", "empty": "empty", "random": "not a readable video", "trunc_h264": "readable",
    "trunc_vp9": "truncated", "trunc_mjpeg": "truncated", "audio": "no video stream",
    "unsupported": "unsupported video codec", "zero_frames": "zero frames", "absurd": "absurd frame size",
    "directory": "not a regular file",
}


@pytest.mark.parametrize("backend", ["pyav", "dali"])
@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_raise_decode_error(files, name, backend):
    if backend == "dali" and dali_unavailable_reason() is not None:
        pytest.skip(dali_unavailable_reason())
    svc = VideoService(backend=backend)
    for call in (lambda: svc.probe(files[name]), lambda: svc.sample(files[name]),
                 lambda: svc.window(files[name], 0.0, 1.0), lambda: svc.crop(files[name], 0.0, (0, 0, 1, 1))):
        with pytest.raises(VideoDecodeError) as e:
            _run_bounded(call)
        assert str(files[name]) in str(e.value) and BAD_FILES[name] in str(e.value), str(e.value)


def test_no_file_handle_leaks(files):
    svc = VideoService(backend="pyav", cache_bytes=0)
    dali = VideoService(backend="dali", cache_bytes=0) if dali_unavailable_reason() is None else svc

    def round_trip():
        for name in BAD_FILES:
            with pytest.raises(VideoDecodeError):
                svc.sample(files[name])
        for c in ("h264", "vp9", "mjpeg"):
            svc.window(files["good_" + c], 0.5, 2.0)
            with pytest.raises(VideoRequestError):
                svc.window(files["good_" + c], 3.0, 1.0)
        for c in ("vp9", "mjpeg"):
            dali.window(files["good_" + c], 0.5, 2.0)

    round_trip()  # warm-up: libraries open their own long-lived handles (DALI threads...) once
    gc.collect()
    before = _open_fds()
    for _ in range(3):
        round_trip()
    gc.collect()
    assert _open_fds() <= before


BAD_WINDOWS = [((5.0, 9.0), "outside"), ((-3.0, -1.0), "outside"), ((2.0, 1.0), "inverted"), ((1.0, 1.0), "empty"),
               ((math.nan, 1.0), "finite"), ((0.0, math.inf), "finite"), (("a", 1.0), "finite"), ((4.0, 5.0), "outside")]


@pytest.mark.parametrize("span,word", BAD_WINDOWS)
def test_bad_windows_raise_request_error(files, span, word):
    path = files["good_h264"]  # 32 frames at 8 fps: 4 s
    with pytest.raises(VideoRequestError) as e:
        VideoService(backend="pyav").window(path, *span)
    assert str(path) in str(e.value) and word in str(e.value)


BAD_BOXES = [((0.5, 0.5, 0.5, 0.9), "empty"), ((0.6, 0.1, 0.2, 0.5), "inverted"), ((1.1, 0.0, 1.5, 1.0), "outside"),
             ((-0.5, -0.5, -0.1, 0.5), "outside"), ((0, 0, math.nan, 1), "finite"), ((0, 0, 1), "4"),
             ("abcd", "4 numbers"), (None, "4 numbers")]


@pytest.mark.parametrize("bbox,word", BAD_BOXES)
def test_bad_bboxes_raise_request_error(files, bbox, word):
    path = files["good_mjpeg"]
    with pytest.raises(VideoRequestError) as e:
        VideoService(backend="pyav").crop(path, 1.0, bbox)
    assert str(path) in str(e.value) and word in str(e.value)


@pytest.mark.parametrize("time_s", [-0.1, 4.5, math.nan])
def test_bad_crop_time(files, time_s):
    with pytest.raises(VideoRequestError, match="crop time"):
        VideoService(backend="pyav").crop(files["good_mjpeg"], time_s, (0, 0, 1, 1))


def test_one_row_crop_still_makes_valid_patches(files):
    clip = VideoService(backend="pyav").crop(files["good_mjpeg"], 1.0, (0.0, 0.5, 1.0, 0.501))
    assert clip.frames.shape[1:3] == (1, 160)
    h, w = clip.resized_hw  # aspect 160 is within Qwen's limit of 200; sides are multiples of 28
    assert h % 28 == 0 and w % 28 == 0 and h * w >= FramePolicy().min_pixels


def test_extreme_aspect_is_refused():
    from engine.video.policy import smart_resize
    with pytest.raises(VideoRequestError, match="aspect ratio"):
        smart_resize(1, 201)


def test_bad_service_and_policy_arguments():
    with pytest.raises(VideoRequestError, match="unknown video backend"):
        VideoService(backend="ffmpeg")
    with pytest.raises(VideoRequestError, match="device"):
        VideoService(device="tpu")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(VideoRequestError, match="CUDA is not available"):
            VideoService(device="cuda")
    for kwargs in ({"fps": 0}, {"fps": math.nan}, {"min_frames": 0}, {"max_frames": 1}, {"min_frames": 9, "max_frames": 8},
                   {"max_pixels": 10}, {"total_pixels": -1}):
        with pytest.raises(VideoRequestError, match="FramePolicy"):
            FramePolicy(**kwargs)


def test_dali_on_cpu_refuses_h264_with_the_reason(files):
    if dali_unavailable_reason() is not None:
        with pytest.raises(VideoRequestError, match="dali"):
            VideoService(backend="dali")
        return
    svc = VideoService(backend="dali")
    with pytest.raises(VideoRequestError, match="cannot decode codec 'h264'") as e:
        svc.sample(files["good_h264"])
    assert str(files["good_h264"]) in str(e.value)
    assert svc.sample(files["good_vp9"]).backend == "dali-cpu"


def test_dali_cpu_truncated_stream_is_a_decode_error(tmp_path, files):
    """A file whose index looks whole but whose packets are corrupt fails inside DALI: still typed."""
    if dali_unavailable_reason() is not None:
        pytest.skip(dali_unavailable_reason())
    data = bytearray(files["good_mjpeg"].read_bytes())
    # Zero a run of bytes in the middle of the movie data (keeps the AVI index valid).
    mid = len(data) // 2
    data[mid: mid + 4000] = bytes(4000)
    p = tmp_path / "corrupt.avi"
    p.write_bytes(bytes(data))
    svc = VideoService(backend="dali", cache_bytes=0)
    try:
        clip = svc.sample(p, FramePolicy(fps=8.0, max_frames=32))
    except VideoDecodeError as e:
        assert str(p) in str(e)
    else:  # libavcodec may conceal the damage; the call must still return whole frames
        assert clip.frames.shape[0] == clip.frame_indices.numel()
