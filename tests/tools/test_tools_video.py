"""frame_zoom / spatial_zoom on real synthetic videos: frames come only from the asked window, carry their true
timestamps (read back from the code strip drawn into every frame), and the text states what was served."""
import math

import numpy as np
import pytest

from engine.data.frame_code import read_frame_index
from engine.data.synthetic import expected_frame
from engine.tools import MAX_ZOOM_FRAMES, ToolCall, default_registry, relook_observation
from engine.video import FramePolicy


def run(ctx, name, **arguments):
    return default_registry().execute(ToolCall(name, arguments), ctx)


def true_indices(clip) -> list[int]:
    return [read_frame_index(f.cpu().numpy()) for f in clip.frames]


def record_of(tools_dataset, ctx):
    _, videos = tools_dataset
    return next(r for r in videos.values() if str(r.path) == ctx.video_path)


@pytest.mark.parametrize("start, end", [(3, 5), (0.5, 1.25), ("00:02", "00:06.5"), (0, 8), (6.9, 8)])
def test_frame_zoom_serves_only_the_window_at_true_timestamps(tools_dataset, make_ctx, start, end):
    ctx = make_ctx()
    rec = record_of(tools_dataset, ctx)
    obs = run(ctx, "frame_zoom", start=start, end=end)
    assert obs.error is None, obs.text
    (clip,) = obs.clips
    lo = start if isinstance(start, (int, float)) else int(start[3:5]) + float(start[5:] or 0)
    hi = end if isinstance(end, (int, float)) else int(end[3:5]) + float(end[5:] or 0)
    indices = true_indices(clip)
    assert indices == clip.frame_indices.tolist()
    true_times = [i / rec.fps for i in indices]  # the generator writes frame i at i / fps exactly
    assert all(lo - 1e-9 <= t <= hi + 1e-9 for t in true_times), (true_times, lo, hi)
    np.testing.assert_allclose(clip.timestamps_s.numpy(), true_times, atol=1e-6)
    assert indices == sorted(set(indices)) and len(indices) >= 2
    # the text states the real span served and every frame's time
    assert f"frames {_clock(lo)}-{_clock(hi)}, {len(indices)} frames at " in obs.text
    for t in true_times:
        assert f"{_clock(t, 2)}" in obs.text


def _clock(t: float, digits: int = 1) -> str:
    whole = round(t * 10**digits)
    m, rest = divmod(whole, 60 * 10**digits)
    s, frac = divmod(rest, 10**digits)
    return f"{m:02d}:{s:02d}.{frac:0{digits}d}"


def test_frame_zoom_window_between_two_frames_gives_the_frame_on_screen(make_ctx):
    obs = run(make_ctx(), "frame_zoom", start=7.9, end=7.95)  # frames start at 7.875 and (none) 8.0
    assert obs.error is None
    assert true_indices(obs.clips[0]) == [63]
    assert "1 frame at 00:07.88" in obs.text and "holds no frame start" in obs.text


def test_frame_zoom_pixels_match_the_rendered_frames(tools_dataset, make_ctx):
    ctx = make_ctx()
    rec = record_of(tools_dataset, ctx)
    (clip,) = run(ctx, "frame_zoom", start=2, end=4).clips
    for frame, index in zip(clip.frames, clip.frame_indices.tolist()):
        diff = np.abs(frame.cpu().numpy().astype(int) - expected_frame(rec, index).astype(int))
        assert diff.mean() < 4.0  # H.264 at crf 18: small coding noise only


@pytest.mark.parametrize("asked, served", [(8, 8), (7, 6), (1, 2), (100, MAX_ZOOM_FRAMES)])
def test_frame_zoom_num_frames_overrides_the_policy(make_ctx, asked, served):
    obs = run(make_ctx(), "frame_zoom", start=0, end=8, num_frames=asked)
    assert obs.error is None
    (clip,) = obs.clips
    assert clip.num_frames == served == len(set(true_indices(clip)))
    assert clip.grid_thw[0] == served // 2
    if asked != served:
        assert "Notes:" in obs.text and str(served) in obs.text.split("Notes:")[1]


def test_frame_zoom_short_window_says_how_many_frames_it_holds(make_ctx):
    obs = run(make_ctx(), "frame_zoom", start=1, end=1.5, num_frames=16)  # 1.0, 1.125, ..., 1.5: 5 frames
    (clip,) = obs.clips
    assert clip.num_frames == 4 and "holds only 4 frame(s)" in obs.text


def test_frame_zoom_default_count_follows_the_policy(make_ctx):
    policy = FramePolicy(fps=4.0, min_frames=2, max_frames=16)
    obs = run(make_ctx(policy=policy), "frame_zoom", start=2, end=6)
    assert obs.clips[0].num_frames == 16  # 4 s * 4 fps, capped at 16


def test_frame_zoom_clamps_to_the_video_with_a_note(make_ctx):
    obs = run(make_ctx(), "frame_zoom", start=-2, end=30)
    assert obs.error is None
    (clip,) = obs.clips
    assert clip.start_s == 0.0 and math.isclose(clip.end_s, 8.0)
    assert "clamped to 0s" in obs.text and "clamped to the video duration" in obs.text
    assert max(true_indices(clip)) <= 63 and "frames 00:00.0-00:08.0" in obs.text


def test_spatial_zoom_crops_the_frame_on_screen(tools_dataset, make_ctx):
    ctx = make_ctx()
    rec = record_of(tools_dataset, ctx)
    full = run(ctx, "spatial_zoom", time=4.3, bbox=[0, 0, 1, 1])
    assert full.error is None
    frame = full.clips[0].frames[0].cpu().numpy()
    assert read_frame_index(frame) == math.floor(4.3 * rec.fps)  # the frame on screen at 4.3 s
    box = [0.25, 0.1, 0.75, 0.6]
    obs = run(ctx, "spatial_zoom", time="00:04.3", bbox=box)
    assert obs.error is None, obs.text
    (clip,) = obs.clips
    x0, y0 = math.floor(box[0] * rec.width), math.floor(box[1] * rec.height)
    x1, y1 = math.ceil(box[2] * rec.width), math.ceil(box[3] * rec.height)
    np.testing.assert_array_equal(clip.frames[0].cpu().numpy(), frame[y0:y1, x0:x1])
    assert f"({x1 - x0}x{y1 - y0} source pixels)" in obs.text and "00:04.25" in obs.text
    assert clip.grid_thw[0] == 1


def test_spatial_zoom_partly_outside_box_is_clamped_with_a_note(make_ctx):
    obs = run(make_ctx(), "spatial_zoom", time=1, bbox=[0.5, 0.5, 1.4, 1.2])
    assert obs.error is None and "clamped to the frame" in obs.text
    assert obs.clips[0].bbox == (0.5, 0.5, 1.0, 1.0)


def test_relook_observation_serves_the_closed_span(make_ctx):
    ctx = make_ctx()
    obs = relook_observation("<time>00:01-00:02</time><caption>x</caption><think>y</think> <time>00:05-00:07</time>", ctx)
    assert obs.error is None
    assert all(5.0 - 1e-9 <= i / 8 <= 7.0 + 1e-9 for i in true_indices(obs.clips[0]))
    assert relook_observation("no span here", ctx) is None
    late = relook_observation("<time>00:20-00:25</time>", ctx)
    assert late.error and "past the end of the video" in late.text


@pytest.mark.parametrize("limit", [2, 7, 8, MAX_ZOOM_FRAMES])
def test_frame_zoom_schema_states_the_configured_frame_limit(limit):
    """The model is told rollout.max_zoom_frames (even), the limit the tool then enforces, not the default's."""
    schema = default_registry(max_zoom_frames=limit).get("frame_zoom").schema()
    described = schema["function"]["parameters"]["properties"]["num_frames"]["description"]
    assert f"at most {limit - limit % 2})" in described
    other = 32 if limit != 32 else 8
    assert f"at most {other})" not in described
