"""Qwen3-VL's video prompt layout (a text timestamp before each temporal patch), against a transcription of the
published Qwen3VLProcessor (transformers 4.57), for prompts and for tool observations with their own times."""
import re

import pytest
import torch

from engine.errors import VideoRequestError
from engine.model.video_tokens import VIDEO_BLOCK, patch_timestamps, video_prompt_ids
from engine.tools import ToolCall, ToolContext, default_registry, observation_token_ids
from engine.tools.render import inline_video_token_ids
from engine.video import VideoService
from engine.video.spec import QWEN2_5_VL, QWEN3_VL
from engine.video.types import VideoInput


# ---- the published processor, transcribed (Qwen3VLProcessor.__call__'s video branch, 4.57) -------------------
def _calculate_timestamps(indices, video_fps, merge_size=2):
    indices = list(indices)
    if len(indices) % merge_size != 0:
        indices.extend(indices[-1] for _ in range(merge_size - len(indices) % merge_size))
    timestamps = [idx / video_fps for idx in indices]
    return [(timestamps[i] + timestamps[i + merge_size - 1]) / 2 for i in range(0, len(timestamps), merge_size)]


def published_text(text, grids, metadata, merge_size=2):
    """metadata: (frames_indices, fps) per video. Returns the text the processor tokenizes."""
    merge_length = merge_size**2
    index = 0
    while "<|video_pad|>" in text:
        indices, fps = metadata[index]
        curr_timestamp = _calculate_timestamps(indices, fps, merge_size)
        t, h, w = grids[index]
        frame_seqlen = h * w // merge_length
        video_placeholder = ""
        for frame_idx in range(t):
            video_placeholder += f"<{curr_timestamp[frame_idx]:.1f} seconds>"
            video_placeholder += "<|vision_start|>" + "<|placeholder|>" * frame_seqlen + "<|vision_end|>"
        if "<|vision_start|><|video_pad|><|vision_end|>" in text:
            text = text.replace("<|vision_start|><|video_pad|><|vision_end|>", video_placeholder, 1)
        else:
            text = text.replace("<|video_pad|>", video_placeholder, 1)
        index += 1
    return text.replace("<|placeholder|>", "<|video_pad|>")


def _video(indices, fps, h=4, w=6):
    t = (len(indices) + 1) // 2
    times = tuple(i / fps for i in indices)
    return VideoInput(torch.zeros(t * h * w, QWEN3_VL.patch_width), (t, h, w), 2 / fps, times[0], times[-1], times)


@pytest.mark.parametrize("videos", [
    [([0, 10, 21, 33], 8.0)],                       # even count, uneven spacing
    [([3, 9, 15], 6.0)],                            # odd count: the last patch repeats its frame
    [([0, 12], 24.0), ([240, 250, 260, 270, 280, 290], 24.0)],  # two videos, the second far into its file
    [([7], 2.0)],                                   # one frame (a spatial zoom)
])
def test_prompt_ids_equal_the_published_processor(tiny_tokenizer, videos):
    tok = tiny_tokenizer
    inputs = [_video(ix, fps) for ix, fps in videos]
    text = "<|im_start|>user\n" + "".join(f"clip {k}: {VIDEO_BLOCK}\n" for k in range(len(inputs))) + "Why?<|im_end|>\n"
    ours = video_prompt_ids(text, inputs, QWEN3_VL, tok)
    want = tok(published_text(text, [v.grid_thw for v in inputs], videos), add_special_tokens=False)["input_ids"]
    assert ours == want
    pad = tok.convert_tokens_to_ids("<|video_pad|>")
    assert ours.count(pad) == sum(v.pixel_values.shape[0] for v in inputs) // 4


def test_patch_timestamps_are_the_mean_of_each_pair():
    assert patch_timestamps([0.0, 5.0, 10.5, 15.5]) == [2.5, 13.0]
    assert patch_timestamps([1.0, 2.0, 3.0]) == [1.5, 3.0]
    assert patch_timestamps([4.25]) == [4.25]
    with pytest.raises(VideoRequestError, match="frame times"):
        patch_timestamps([])


def test_qwen25_layout_is_unchanged(tiny_tokenizer):
    tok = tiny_tokenizer
    video = _video([0, 10, 21, 33], 8.0)
    ids = video_prompt_ids(f"a {VIDEO_BLOCK} b", [video], QWEN2_5_VL, tok)
    assert "seconds" not in tok.decode(ids)
    assert ids.count(tok.convert_tokens_to_ids("<|video_pad|>")) == 2 * 4 * 6 // 4


def test_mismatched_frame_times_are_refused(tiny_tokenizer):
    video = _video([0, 10, 21, 33], 8.0)
    video.frame_times_s = video.frame_times_s[:2]  # one temporal patch's worth for a two-patch grid
    with pytest.raises(VideoRequestError, match="temporal patches"):
        video_prompt_ids(VIDEO_BLOCK, [video], QWEN3_VL, tiny_tokenizer)
    with pytest.raises(VideoRequestError, match="video blocks"):
        video_prompt_ids(VIDEO_BLOCK * 2, [video], QWEN3_VL, tiny_tokenizer)


def test_frame_zoom_observations_carry_their_own_times(tiny_tokenizer, make_ctx):
    """A zoom into 6-8 s is shown as patches stamped 6.x-8.x seconds: the real times in the source video."""
    base = make_ctx()
    service = VideoService(device="cpu", backend="pyav", cache_bytes=0, spec=QWEN3_VL)
    ctx = ToolContext(base.video_path, service, base.frame_policy, base.duration_s)
    obs = default_registry().execute(ToolCall("frame_zoom", {"start": 6, "end": 8, "num_frames": 4}), ctx)
    assert obs.error is None
    (clip,) = obs.clips
    assert clip.pixel_values.shape[1] == QWEN3_VL.patch_width and clip.resized_hw[0] % 32 == 0
    times = clip.timestamps_s.tolist()
    ids, videos = observation_token_ids(obs, tiny_tokenizer, QWEN3_VL)
    text = tiny_tokenizer.decode(ids)
    stamps = [float(s) for s in re.findall(r"<(\d+\.\d) seconds><\|vision_start\|>", text)]
    assert stamps == [round((a + b) / 2, 1) for a, b in zip(times[::2], times[1::2])]
    assert all(6.0 <= s <= 8.0 for s in stamps) and len(stamps) == videos[0].grid_thw[0]
    # The grounded re-look injects the same blocks inline, without the observation's text.
    inline, _ = inline_video_token_ids(obs, tiny_tokenizer, QWEN3_VL)
    assert tiny_tokenizer.decode(inline) == "".join(re.findall(r"<\d+\.\d seconds><\|vision_start\|>(?:<\|video_pad\|>)+"
                                                               r"<\|vision_end\|>", text))
