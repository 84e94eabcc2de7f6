"""Synthetic videos decoded back with PyAV, for every codec: frame count, fps, per-frame index code,
shapes of the right colour where and when the records say, and pixels close to the pre-encoding frames."""
from fractions import Fraction

import av
import numpy as np
import pytest

from engine.data.dataset import load_rows, load_videos
from engine.data.frame_code import strip_height
from engine.data.synthetic import BACKGROUND, COLOURS, expected_frame, make_dataset, read_frame_index, scene_at

CONTAINER = {"h264": (".mp4", "h264"), "vp9": (".webm", "vp9"), "mjpeg": (".avi", "mjpeg")}
TOL = 40  # per channel, on a 3x3 patch mean: colours are >= 100 apart in some channel


@pytest.fixture(scope="module", params=sorted(CONTAINER))
def dataset(request, tmp_path_factory):
    codec = request.param
    out = tmp_path_factory.mktemp(f"syn_{codec}")
    make_dataset(out, num_videos=3, seed=11, codec=codec)
    return codec, out, load_videos(out)


def _decode(path, **reformat):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.reformat(format="rgb24", **reformat).to_ndarray() for f in c.decode(s)]
        return frames, s.average_rate, s.codec_context.name


def _inside_y(ev, scene_h):
    # Triangles point up and are thin at their centre row; 4 px lower is well inside at r = 12.
    return int(ev.y * scene_h + (4 if ev.shape == "triangle" else 0))


def _patch(frame, x, y):
    return frame[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(float).mean(axis=0)


def test_container_count_fps_and_index_code(dataset):
    codec, out, videos = dataset
    ext, name = CONTAINER[codec]
    assert len(videos) == 3
    for rec in videos.values():
        assert rec.path.suffix == ext and rec.path.is_file() and rec.path.parent == out / "videos"
        frames, rate, codec_name = _decode(rec.path)
        assert codec_name == name
        assert rate == Fraction(8) and rec.fps == 8.0
        assert len(frames) == rec.num_frames == 64
        assert frames[0].shape == (120, 160, 3)
        assert [read_frame_index(f) for f in frames] == list(range(64))


def test_index_code_survives_half_size_resize(dataset):
    _, _, videos = dataset
    for rec in videos.values():
        for interp in ("BILINEAR", "AREA"):
            frames, _, _ = _decode(rec.path, width=80, height=60, interpolation=interp)
            assert frames[0].shape == (60, 80, 3)
            assert [read_frame_index(f) for f in frames] == list(range(64))


def test_pixels_match_rendered_frames(dataset):
    _, _, videos = dataset
    for rec in videos.values():
        frames, _, _ = _decode(rec.path)
        for i, f in enumerate(frames):
            err = np.abs(f.astype(int) - expected_frame(rec, i).astype(int))
            assert err.mean() < 4, (rec.video_id, i, err.mean())


def test_shapes_have_their_colour_at_the_expected_place_and_time(dataset):
    _, _, videos = dataset
    checked = 0
    for rec in videos.values():
        frames, _, _ = _decode(rec.path)
        for i, f in enumerate(frames):
            for s in scene_at(rec, i / rec.fps):
                got = _patch(f, *s.probe_xy)
                assert np.abs(got - COLOURS[s.colour]).max() < TOL, (rec.video_id, i, s, got)
                checked += 1
        # Independently of scene_at: each shape's appear event puts its colour at (x_from, y) from its
        # first frame on, and that spot is background on the frame before.
        sh = rec.height - strip_height(rec.height)
        for ev in rec.events:
            if ev.kind != "appear":
                continue
            first = int(np.ceil(ev.start_s * rec.fps - 1e-9))
            x, y = int(ev.x_from * rec.width), _inside_y(ev, sh)
            assert np.abs(_patch(frames[first], x, y) - COLOURS[ev.colour]).max() < TOL
            if first > 0:
                assert np.abs(_patch(frames[first - 1], x, y) - BACKGROUND).max() < TOL
    assert checked > 100


def test_moves_are_linear_in_time(dataset):
    # At the middle frame of a move the shape sits half way between the two named positions.
    _, _, videos = dataset
    seen = 0
    for rec in videos.values():
        frames, _, _ = _decode(rec.path)
        sh = rec.height - strip_height(rec.height)
        for ev in rec.events:
            if ev.x_from == ev.x_to:
                continue
            mid = (ev.start_s + ev.end_s) / 2
            i = round(mid * rec.fps)
            t = i / rec.fps
            x = (ev.x_from + (ev.x_to - ev.x_from) * (t - ev.start_s) / (ev.end_s - ev.start_s)) * rec.width
            y = _inside_y(ev, sh)
            colour = [s.colour for s in scene_at(rec, t) if s.object_id == ev.object_id][0]
            assert np.abs(_patch(frames[i], int(x), int(y)) - COLOURS[colour]).max() < TOL
            seen += 1
    assert seen >= 1


def test_questions_agree_with_decoded_pixels(dataset):
    _, out, videos = dataset
    rows = load_rows(out / "train.jsonl") + load_rows(out / "eval.jsonl")
    assert {r.video_id for r in rows} == set(videos)
    palette = {**COLOURS, "background": BACKGROUND}
    names = list(palette)
    ref = np.array([palette[n] for n in names], float)

    def colours_in(frame):
        sh = frame.shape[0] - strip_height(frame.shape[0])
        px = frame[:sh].reshape(-1, 3).astype(float)
        d = np.linalg.norm(px[:, None, :] - ref[None], axis=2)
        near = d.argmin(axis=1)[d.min(axis=1) < 50]
        counts = np.bincount(near, minlength=len(names))
        return {names[k] for k in range(len(names)) if counts[k] >= 40 and names[k] != "background"}

    seen = {vid: [colours_in(f) for f in _decode(rec.path)[0]] for vid, rec in videos.items()}  # per frame
    checked = 0
    for r in rows:
        colours, rec = seen[r.video_id], videos[r.video_id]
        if r.kind == "grounding" and r.question.endswith("appear?"):
            colour = r.question.split()[3]
            present = [colour in c for c in colours]
            first = present.index(True)
            assert first / rec.fps == r.answer_span_s[0]
            assert not any(present[:first])
            checked += 1
        elif r.question == "How many shapes appear in the video?":
            assert int(r.options[r.answer_index]) == len(colours[-1])  # colours are unique per video
            checked += 1
        elif r.question.endswith("at the end of the video?"):
            assert r.options[r.answer_index] in colours[-1]
            checked += 1
    assert checked >= 3 * len(videos)


@pytest.mark.parametrize("codec", sorted(CONTAINER))
def test_fractional_fps_and_duration(tmp_path, codec):
    paths = make_dataset(tmp_path, num_videos=1, seed=4, codec=codec, fps=7.5, duration_s=5.5, width=128, height=64)
    (rec,) = load_videos(paths.dir).values()
    assert rec.num_frames == 41 and rec.fps == 7.5 and rec.duration_s == 41 / 7.5  # round(5.5 * 7.5) frames
    with av.open(str(rec.path)) as c:
        s = c.streams.video[0]
        assert s.average_rate == Fraction(15, 2)
        frames = list(c.decode(s))
    assert [read_frame_index(f.to_ndarray(format="rgb24")) for f in frames] == list(range(41))
    # Presentation times match index / fps (WebM stores milliseconds).
    assert max(abs(float(f.time) - i / 7.5) for i, f in enumerate(frames)) < 1e-3
