"""Expands each vision pad token to one token per merged patch, and labels token modalities."""
from collections.abc import Sequence

from engine.errors import VideoRequestError

# Modality codes Qwen2.5-VL's get_rope_index expects in `mm_token_type_ids`.
TEXT_TYPE, IMAGE_TYPE, VIDEO_TYPE = 0, 1, 2


def _grid(grid: Sequence[int], merge_size: int, index: int) -> tuple[int, int, int]:
    values = [int(v) for v in grid]  # accepts tuples, lists and rows of a LongTensor
    if len(values) != 3 or any(v <= 0 for v in values):
        raise VideoRequestError(f"grid_thws[{index}] must be three positive ints (t, h, w), got {values}")
    t, h, w = values
    if h % merge_size or w % merge_size:
        raise VideoRequestError(
            f"grid_thws[{index}] = {values}: h and w must be multiples of merge_size {merge_size}")
    return t, h, w


def num_vision_tokens(grid: Sequence[int], merge_size: int) -> int:
    """LLM tokens one image/video of patch grid (t, h, w) occupies: t*h*w / merge_size**2."""
    t, h, w = _grid(grid, merge_size, 0)
    return t * h * w // (merge_size * merge_size)


def expand_vision_pads(token_ids: Sequence[int], grid_thws: Sequence[Sequence[int]],
                       merge_size: int, pad_id: int) -> list[int]:
    """Replace the i-th `pad_id` in `token_ids` by t*h*w/merge_size**2 copies of it (grid i).

    The chat template writes one pad per video; the vision tower emits one embedding per merged
    patch, and the model scatters them over the pads, so the counts must agree exactly.
    """
    if merge_size <= 0:
        raise VideoRequestError(f"merge_size must be positive, got {merge_size}")
    grids = [_grid(g, merge_size, i) for i, g in enumerate(grid_thws)]
    n_pads = sum(1 for tid in token_ids if tid == pad_id)
    if n_pads != len(grids):
        raise VideoRequestError(
            f"{n_pads} pad tokens (id {pad_id}) in the prompt but {len(grids)} grids given; "
            "each vision input needs exactly one pad before expansion")
    out: list[int] = []
    next_grid = iter(grids)
    for tid in token_ids:
        if tid == pad_id:
            t, h, w = next(next_grid)
            out.extend([pad_id] * (t * h * w // (merge_size * merge_size)))
        else:
            out.append(int(tid))
    return out


def mm_token_type_ids(token_ids: Sequence[int], image_pad_id: int, video_pad_id: int) -> list[int]:
    """Per-token modality (0 text, 1 image, 2 video): what Qwen2.5-VL needs to build M-RoPE ids.

    transformers >= 5 only computes 3-D positions when this is passed alongside the grids;
    without it vision tokens silently get plain 1-D positions.
    """
    kinds = {image_pad_id: IMAGE_TYPE, video_pad_id: VIDEO_TYPE}
    return [kinds.get(int(tid), TEXT_TYPE) for tid in token_ids]
