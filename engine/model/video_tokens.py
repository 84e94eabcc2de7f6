"""Writes videos into prompts as each architecture's processor does, and labels token modalities."""
from collections.abc import Sequence

from engine.errors import VideoRequestError
from engine.video.spec import VisionSpec
from engine.video.types import VideoInput

# What the chat template writes per video part; expanded here once the video's grid is known.
VIDEO_BLOCK = "<|vision_start|><|video_pad|><|vision_end|>"
VIDEO_PAD = "<|video_pad|>"

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


def patch_timestamps(frame_times_s: Sequence[float], temporal_patch_size: int = 2) -> list[float]:
    """Qwen3-VL's time of each temporal patch: the mean of its first and last frame's time (a short last patch
    repeats its last frame, as patchify does)."""
    times = [float(t) for t in frame_times_s]
    if not times:
        raise VideoRequestError("a Qwen3-VL video needs its frame times for the timestamps in its prompt")
    times += [times[-1]] * (-len(times) % temporal_patch_size)
    return [(times[i] + times[i + temporal_patch_size - 1]) / 2 for i in range(0, len(times), temporal_patch_size)]


def video_prompt_ids(text: str, videos: Sequence[VideoInput], spec: VisionSpec, tokenizer) -> list[int]:
    """Token ids of `text`, which holds one VIDEO_BLOCK per video in order, as the architecture's processor
    writes it: each block's pad repeated once per merged patch.

    Qwen3-VL (spec.timestamps) writes each temporal patch as its own block after its time in text,
    `<{t:.1f} seconds><|vision_start|>` + h*w/merge**2 pads + `<|vision_end|>`, with t from `patch_timestamps`
    of the frames' real times (a tool's clip of 12-14 s says 12.x seconds). The text is rewritten before it
    is tokenized, as the processor does, so timestamps tokenize exactly as in the whole conversation.
    """
    grids: list[tuple[int, int, int]] = []
    if spec.timestamps:
        pieces = text.split(VIDEO_BLOCK)
        if len(pieces) != len(videos) + 1:
            raise VideoRequestError(f"the prompt has {len(pieces) - 1} video blocks but {len(videos)} videos are given")
        out = [pieces[0]]
        for video, rest in zip(videos, pieces[1:]):
            t, h, w = video.grid_thw
            stamps = patch_timestamps(video.frame_times_s, spec.temporal_patch_size)
            if len(stamps) != t:
                raise VideoRequestError(f"a video of grid {tuple(video.grid_thw)} has {len(video.frame_times_s)} frame "
                                        f"times, which make {len(stamps)} temporal patches, not {t}")
            out += [f"<{s:.1f} seconds>{VIDEO_BLOCK}" for s in stamps] + [rest]
            grids += [(1, h, w)] * t
        text = "".join(out)
    else:
        grids = [v.grid_thw for v in videos]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return expand_vision_pads(ids, grids, spec.merge_size, tokenizer.convert_tokens_to_ids(VIDEO_PAD))


def mm_token_type_ids(token_ids: Sequence[int], image_pad_id: int, video_pad_id: int) -> list[int]:
    """Per-token modality (0 text, 1 image, 2 video): what Qwen2.5-VL needs to build M-RoPE ids.

    transformers >= 5 only computes 3-D positions when this is passed alongside the grids;
    without it vision tokens silently get plain 1-D positions.
    """
    kinds = {image_pad_id: IMAGE_TYPE, video_pad_id: VIDEO_TYPE}
    return [kinds.get(int(tid), TEXT_TYPE) for tid in token_ids]
