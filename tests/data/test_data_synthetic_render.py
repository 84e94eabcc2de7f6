"""The renderer against hand-computed geometry: shape areas, centroids, timing of appear/move/change."""
import math
from pathlib import Path

import numpy as np
import pytest

from engine.data.frame_code import read_frame_index
from engine.data.schema import DatasetError, Event, Segment, VideoRecord
from engine.data.synthetic import BACKGROUND, COLOURS, expected_frame, plan_video, scene_at

W, H, FPS = 160, 120, 8.0
SCENE_H = 104  # 120 minus the 16-row code strip
R = 12  # floor(min(0.36 * 104 / 3, 0.09 * 160))
AREA = {"circle": math.pi * R * R, "square": (2 * R) ** 2, "triangle": 2 * R * R, "diamond": 2 * R * R}


def _record(shape, colour="red"):
    events = [
        Event("appear", 1.0, 1.0, 0, shape, colour, 0.5, 0.2, 0.2, "left", "left"),
        Event("move", 2.0, 4.0, 0, shape, colour, 0.5, 0.2, 0.8, "left", "right"),
        Event("change_colour", 4.0, 4.0, 0, shape, "blue", 0.5, 0.8, 0.8, "right", "right", from_colour=colour),
    ]
    segs = [Segment(0.0, 2.0, "x"), Segment(2.0, 4.0, "y"), Segment(4.0, 5.0, "z")]
    return VideoRecord("t", Path("/nonexistent.mp4"), "h264", FPS, 40, W, H, 5.0, segs, events)


def _mask(frame, rgb):
    return (frame[:SCENE_H] == np.array(rgb, np.uint8)).all(axis=2)


@pytest.mark.parametrize("shape", sorted(AREA))
def test_shape_area_centroid_and_timing(shape):
    rec = _record(shape)
    # Frame 7 (t = 0.875 s) is before the appear at 1 s: background only.
    f = expected_frame(rec, 7)
    assert (f[:SCENE_H] == BACKGROUND).all()
    # Frame 8 (t = 1 s): the shape at (0.2 W, 0.5 SCENE_H), with the area of its geometric figure.
    m = _mask(expected_frame(rec, 8), COLOURS["red"])
    ys, xs = np.nonzero(m)
    assert abs(m.sum() - AREA[shape]) < 0.1 * AREA[shape]
    cy_expected = 0.5 * SCENE_H + (R / 3 if shape == "triangle" else 0)  # a triangle's centroid is low
    assert abs(xs.mean() + 0.5 - 0.2 * W) < 0.6 and abs(ys.mean() + 0.5 - cy_expected) < 0.6
    # Frame 24 (t = 3 s) is half way through the 2..4 s move from 0.2 W to 0.8 W.
    xs = np.nonzero(_mask(expected_frame(rec, 24), COLOURS["red"]))[1]
    assert abs(xs.mean() + 0.5 - 0.5 * W) < 0.6
    # Frame 32 (t = 4 s): at 0.8 W and blue; no red left.
    f = expected_frame(rec, 32)
    assert not _mask(f, COLOURS["red"]).any()
    xs = np.nonzero(_mask(f, COLOURS["blue"]))[1]
    assert abs(xs.mean() + 0.5 - 0.8 * W) < 0.6
    assert [s.colour for s in scene_at(rec, 3.99)] == ["red"] and [s.colour for s in scene_at(rec, 4.0)] == ["blue"]
    for i in (0, 8, 39):
        assert read_frame_index(expected_frame(rec, i)) == i


def test_probe_points_lie_inside_their_shapes():
    for index in range(6):
        rec = plan_video("p", Path("/x.mp4"), 0, index, "h264", W, H, FPS, 64)
        for i in range(0, 64, 5):
            frame = expected_frame(rec, i)
            for s in scene_at(rec, i / FPS):
                x, y = s.probe_xy
                patch = frame[y - 2:y + 3, x - 2:x + 3].reshape(-1, 3)
                assert (patch == s.rgb).all()


def test_frame_index_out_of_range():
    rec = _record("circle")
    for bad in (-1, 40):
        with pytest.raises(DatasetError, match="frame_index"):
            expected_frame(rec, bad)
