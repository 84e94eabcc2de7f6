"""FramePolicy: Qwen2.5-VL frame counts, indices, sizes and temporal spacing."""
import math

import pytest

from engine.video.policy import (FramePolicy, frame_count, frame_max_pixels, second_per_grid_t, select_frames,
                                 target_size)
from video_testlib import qwen_indices


@pytest.mark.parametrize("first,last,vfps,fps,lo,hi", [
    (0, 63, 8.0, 2.0, 4, 16), (0, 299, 30.0, 2.0, 4, 16), (0, 9, 30.0, 2.0, 4, 16), (10, 12, 8.0, 2.0, 4, 16),
    (0, 1, 8.0, 2.0, 4, 16), (5, 5, 8.0, 2.0, 4, 16), (0, 999, 25.0, 1.0, 3, 7), (0, 99, 10.0, 10.0, 4, 768)])
def test_indices_match_qwen_vl_utils(first, last, vfps, fps, lo, hi):
    policy = FramePolicy(fps=fps, min_frames=lo, max_frames=hi)
    got = select_frames(first, last, vfps, policy)
    assert got == qwen_indices(first, last, vfps, fps, lo, hi)
    assert got == sorted(set(got)) and first <= got[0] and got[-1] <= last
    if len(got) > 1:
        assert len(got) % 2 == 0 and got[0] == first and got[-1] == last


def test_counts_are_even_and_bounded():
    p = FramePolicy(fps=2.0, min_frames=4, max_frames=16)
    assert frame_count(640, 8.0, p) == 16  # 160 wanted, capped
    assert frame_count(64, 8.0, p) == 16
    assert frame_count(40, 8.0, p) == 10  # 5 s * 2 fps
    assert frame_count(9, 8.0, p) == 4  # min_frames
    assert frame_count(3, 8.0, p) == 2  # fewer frames than min: all it can, even
    assert frame_count(1, 8.0, p) == 1
    assert frame_count(17, 8.0, FramePolicy(fps=8.0, min_frames=3, max_frames=9)) == 8  # odd bounds rounded


def test_sizes_are_multiples_of_28_within_budget():
    for h, w in [(120, 160), (480, 640), (720, 1280), (1080, 1920), (114, 202), (33, 500)]:
        for p in (FramePolicy(), FramePolicy(max_pixels=16 * 28 * 28), FramePolicy(total_pixels=20 * 28 * 28 * 16)):
            rh, rw = target_size(h, w, 16, p)
            assert rh % 28 == 0 and rw % 28 == 0
            assert p.min_pixels <= rh * rw <= frame_max_pixels(16, p) or rh * rw <= p.min_pixels * 1.05 * 2
            assert abs(math.log((rh / rw) / (h / w))) < 0.35  # aspect kept up to 28-px rounding


def test_total_pixels_rule():
    p = FramePolicy(max_pixels=128 * 28 * 28, total_pixels=16 * 28 * 28 * 16, min_pixels=4 * 28 * 28)
    assert frame_max_pixels(16, p) == 32 * 28 * 28  # total / T * 2
    assert frame_max_pixels(2, p) == 128 * 28 * 28  # capped by max_pixels
    assert frame_max_pixels(10_000, p) == int(4 * 28 * 28 * 1.05)  # floored at 1.05 * min_pixels


def test_second_per_grid_t_uses_real_times():
    assert second_per_grid_t([0.0, 0.5, 1.0, 1.5], 8.0) == pytest.approx(1.0)
    assert second_per_grid_t([10.0, 10.125], 8.0) == pytest.approx(0.25)
    assert second_per_grid_t([3.0], 8.0) == pytest.approx(0.25)
    # Uniform sampling at fps f gives Qwen's 2 / f.
    assert second_per_grid_t([i / 2 for i in range(16)], 30.0) == pytest.approx(2 / 2.0)
