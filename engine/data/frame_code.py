"""A frame-index code drawn into the bottom strip of every synthetic frame, and its reader.

Layout (all proportional, so the code survives any uniform or non-uniform resize of the *whole* frame):

* The strip is the bottom `strip_height(H)` rows (about H/8, even, >= 8 px at H >= 64).
* It is cut into 16 equal cells across the full width (10 px each at 160 px wide; the generator
  requires width >= 128 so cells are >= 8 px, which H.264/VP9/MJPEG at the generator's quality keep
  readable, also after a 0.5x resize).
* Cell 0 is white and cell 15 black (markers); cells 1..13 hold the index in binary, most significant
  bit first (white = 1); cell 14 is white when the number of 1-bits is odd (even parity).

The reader samples the inner half of each cell in the middle half of the strip (proportions only, so it
does not need to know the size the frame was rendered at), thresholds luma at 128 and checks markers
and parity. Limits: the frame must be whole (not cropped, not padded) and not flipped; each cell
should still be >= 3 px wide and the strip >= 3 px tall after resizing (frames >= 48x24), checked on
decoded H.264/VP9/MJPEG frames at 1x and 0.5x; indices run from 0 to MAX_FRAME_INDEX.
"""
from __future__ import annotations

import numpy as np

from engine.data.schema import FrameCodeError

NUM_CELLS = 16
NUM_BITS = 13
MAX_FRAME_INDEX = (1 << NUM_BITS) - 1  # 8191 frames: 17 min at 8 fps
# Cell means must be this far from mid-grey; a blurred or foreign strip fails loudly instead of misreading.
_MARGIN = 48


def strip_height(height: int) -> int:
    """Rows taken by the code strip at the bottom of a frame `height` rows tall."""
    return 2 * round(height / 16)


def cell_bounds(width: int) -> list[tuple[int, int]]:
    """[x0, x1) columns of each of the NUM_CELLS cells in a frame `width` columns wide."""
    return [(k * width // NUM_CELLS, (k + 1) * width // NUM_CELLS) for k in range(NUM_CELLS)]


def code_bits(index: int) -> list[int]:
    """The NUM_CELLS cell values (1 = white) that encode `index`."""
    if not (0 <= index <= MAX_FRAME_INDEX):
        raise FrameCodeError(f"frame index must be in [0, {MAX_FRAME_INDEX}], got {index}")
    data = [(index >> (NUM_BITS - 1 - b)) & 1 for b in range(NUM_BITS)]
    return [1, *data, sum(data) % 2, 0]


def draw_frame_code(frame: np.ndarray, index: int) -> None:
    """Paint the code for `index` into the bottom strip of `frame` (uint8 [H, W, 3]) in place."""
    h, w = frame.shape[:2]
    y0 = h - strip_height(h)
    for (x0, x1), bit in zip(cell_bounds(w), code_bits(index)):
        frame[y0:, x0:x1] = 255 if bit else 0


def read_frame_index(frame: np.ndarray) -> int:
    """The frame index coded in a (decoded, possibly resized) synthetic frame, uint8 [H, W, 3] or [H, W].

    Raises FrameCodeError when the strip is missing, too small, or does not read as a valid code."""
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[..., :3]
    elif a.ndim != 2:
        raise FrameCodeError(f"read_frame_index needs an [H, W, 3] or [H, W] frame, got shape {a.shape}")
    h, w = a.shape[:2]
    # Middle half of the strip, using H/8 as the strip height: exact rounding of strip_height() at the
    # original size does not matter because only the inner rows are read.
    ry0, ry1 = int(h * (1 - 0.75 / 8)), int(np.ceil(h * (1 - 0.25 / 8)))
    if ry1 - ry0 < 1 or w < 2 * NUM_CELLS:
        raise FrameCodeError(f"frame {h}x{w} is too small to carry a frame-index strip")
    rows = a[ry0:ry1].astype(np.float32)
    if rows.ndim == 3:
        rows = rows.mean(axis=2)
    means = []
    for k in range(NUM_CELLS):
        cx0 = int(np.ceil((k + 0.25) * w / NUM_CELLS))
        cx1 = max(cx0 + 1, int((k + 0.75) * w / NUM_CELLS))
        means.append(float(rows[:, cx0:cx1].mean()))
    m = np.array(means)
    if np.any(np.abs(m - 127.5) < _MARGIN):
        raise FrameCodeError(f"frame-index strip is unreadable (cell means {np.round(m).astype(int).tolist()})")
    bits = (m > 127.5).astype(int).tolist()
    if bits[0] != 1 or bits[-1] != 0:
        raise FrameCodeError(f"frame-index strip markers missing (cells {bits})")
    data = bits[1:1 + NUM_BITS]
    if sum(data) % 2 != bits[1 + NUM_BITS]:
        raise FrameCodeError(f"frame-index strip fails its parity check (cells {bits})")
    return int("".join(map(str, data)), 2)
