"""Frame-index code: layout as documented, round trips, resizes, and loud failure on foreign frames."""
import numpy as np
import pytest

from engine.data.frame_code import MAX_FRAME_INDEX, NUM_CELLS, draw_frame_code, read_frame_index, strip_height
from engine.data.schema import DatasetError, FrameCodeError


def _blank(h=120, w=160, value=32):
    return np.full((h, w, 3), value, np.uint8)


def test_layout_matches_documented_bits():
    # Independent reading of the documented layout: cell k centre column, white = 1, MSB first,
    # markers white/black at the ends and even parity in cell 14.
    h, w = 120, 160
    for index in (0, 1, 5, 1000, 4097, MAX_FRAME_INDEX):
        f = _blank(h, w)
        draw_frame_code(f, index)
        row = f[h - 2]  # bottom rows belong to the strip
        cells = [int(row[k * w // NUM_CELLS + w // (2 * NUM_CELLS), 0] == 255) for k in range(NUM_CELLS)]
        bits = [int(b) for b in format(index, "013b")]
        assert cells == [1, *bits, sum(bits) % 2, 0]
        # Nothing above the strip is touched.
        assert (f[: h - strip_height(h)] == 32).all()
        assert set(np.unique(f[h - strip_height(h):])) <= {0, 255}


@pytest.mark.parametrize("hw", [(120, 160), (64, 128), (240, 320), (480, 854)])
def test_round_trip_many_indices(hw):
    rng = np.random.default_rng(0)
    for index in [0, 1, 2, MAX_FRAME_INDEX, *rng.integers(0, MAX_FRAME_INDEX, 40).tolist()]:
        f = _blank(*hw)
        draw_frame_code(f, index)
        assert read_frame_index(f) == index
        assert read_frame_index(f[..., 0]) == index  # greyscale frames work too


def test_reads_after_resizes_and_noise():
    rng = np.random.default_rng(1)
    for index in rng.integers(0, MAX_FRAME_INDEX, 30).tolist():
        f = _blank()
        f[: 104] = rng.integers(0, 256, (104, 160, 3), dtype=np.uint8)  # busy scene above the strip
        draw_frame_code(f, index)
        half = f.reshape(60, 2, 80, 2, 3).mean(axis=(1, 3)).astype(np.uint8)  # 0.5x area resize
        quarter_w = f.reshape(120, 40, 4, 3).mean(axis=2).astype(np.uint8)  # 0.25x in width only (40 px)
        noisy = np.clip(f.astype(int) + rng.integers(-40, 41, f.shape), 0, 255).astype(np.uint8)
        for g in (f, half, quarter_w, noisy):
            assert read_frame_index(g) == index


def test_foreign_or_damaged_frames_raise():
    with pytest.raises(FrameCodeError, match="unreadable"):
        read_frame_index(_blank(value=128))  # mid grey: no strip at all
    with pytest.raises(FrameCodeError, match="markers"):
        read_frame_index(_blank(value=0))  # black everywhere: start marker missing
    f = _blank()
    draw_frame_code(f, 77)
    x0, x1 = 5 * 160 // NUM_CELLS, 6 * 160 // NUM_CELLS
    f[-strip_height(120):, x0:x1] = 255 - f[-strip_height(120):, x0:x1]  # flip one data bit
    with pytest.raises(FrameCodeError, match="parity"):
        read_frame_index(f)
    with pytest.raises(FrameCodeError, match="too small"):
        read_frame_index(_blank(4, 20))
    with pytest.raises(FrameCodeError, match="shape"):
        read_frame_index(np.zeros((4, 4, 4, 4), np.uint8))
    with pytest.raises(FrameCodeError):
        draw_frame_code(_blank(), MAX_FRAME_INDEX + 1)
    assert issubclass(FrameCodeError, DatasetError)
