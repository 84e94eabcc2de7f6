"""A folder as vthink saves it, used as plain transformers users use one: `AutoProcessor` + `AutoModelForImageTextToText`.

`AutoProcessor`'s Qwen-VL video processor needs torchvision (the `hf` extra), which imports on this machine's CPU
torch only in the vLLM test venv (tests/rollout_vllm/torchvision_cpu_compat.py); elsewhere the module is skipped.
"""
import pytest

pytest.importorskip("torchvision", reason="AutoProcessor's video processor needs torchvision (the `hf` extra)")

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.config import load_config  # noqa: E402
from engine.learner.checkpoint import write_frame_policy  # noqa: E402
from engine.model import model_dir  # noqa: E402
from engine.rollout.backend import Request, SamplingParams  # noqa: E402
from engine.rollout.hf_backend import HFBackend  # noqa: E402
from engine.video.policy import select_frames  # noqa: E402

VIDEO_PAD = "<|video_pad|>"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(session, folder): a tiny run's session and its policy saved as a checkpoint export writes it (processor
    files with the run's frame policy)."""
    import shutil

    from engine.orchestration.session import build_session

    tmp = tmp_path_factory.mktemp("plain")
    cfg = load_config(None, [f"data.dir={tmp / 'data'}", "data.num_videos=4", "data.duration_s=4", "video.fps=1",
                             "video.min_frames=2", "video.max_frames=4", "video.max_pixels=12544"])
    session = build_session(cfg, log=lambda _: None)
    folder = tmp / "export"
    shutil.copytree(model_dir(None), folder)
    write_frame_policy(folder, cfg.video)
    return session, folder


def decoded(path):
    """Every frame of the clip (uint8 [T, H, W, 3]) and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)]), float(stream.average_rate)


def test_auto_processor_loads_and_samples_as_many_frames_of_the_same_size_as_training(saved):
    from transformers import AutoProcessor
    from transformers.video_utils import VideoMetadata

    session, folder = saved
    processor = AutoProcessor.from_pretrained(folder)
    for row in session.train_rows[:2]:
        (trained,) = session.rollout.prepare(row).videos
        frames, fps = decoded(row.video)
        meta = VideoMetadata(total_num_frames=len(frames), fps=fps, duration=len(frames) / fps, video_backend="pyav",
                             frames_indices=list(range(len(frames))))
        # The processor picks its own frames (its index rule is not qwen-vl-utils' linspace: README), but from the
        # saved fps / frame bounds / pixel cap it takes as many, at the same size: the same visual tokens.
        out = processor.video_processor(videos=[frames], video_metadata=[meta], return_tensors="pt")
        assert out["video_grid_thw"][0].tolist() == list(trained.grid_thw)


def test_plain_transformers_with_auto_processor_inputs_writes_vthinks_greedy_answer(saved):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    session, folder = saved
    processor = AutoProcessor.from_pretrained(folder)
    plain = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    backend = HFBackend(session.model, session.tokenizer)
    for row in session.train_rows[:2]:
        prompt = session.rollout.prepare(row)
        (trained,) = prompt.videos
        frames, fps = decoded(row.video)
        picked = frames[select_frames(0, len(frames) - 1, fps, session.rollout.frame_policy)]
        # The prompt as text, with one pad per video as the processor expects it (it expands them itself).
        text = session.tokenizer.decode(prompt.prompt_ids)
        pads = text.count(VIDEO_PAD)
        text = text.replace(VIDEO_PAD * pads, VIDEO_PAD)
        inputs = processor(text=[text], videos=[picked], do_sample_frames=False, return_tensors="pt")
        assert inputs["input_ids"][0].tolist() == prompt.prompt_ids
        assert inputs["video_grid_thw"][0].tolist() == list(trained.grid_thw)
        # Given the frames training saw, the processor's pixels are vthink's up to resize rounding.
        assert (inputs["pixel_values_videos"] - trained.pixel_values).abs().max() < 0.05
        want = backend.generate([Request(prompt.prompt_ids, prompt.videos,
                                         SamplingParams(max_new_tokens=16, temperature=0.0))])[0]
        with torch.no_grad():
            out = plain.generate(**inputs, do_sample=False, max_new_tokens=len(want.token_ids), eos_token_id=None,
                                 pad_token_id=session.tokenizer.pad_token_id)
        assert out[0, len(prompt.prompt_ids):].tolist() == want.token_ids
