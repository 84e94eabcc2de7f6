"""VLLMBackend on the tiny Qwen3-VL (a real vLLM engine, CPU build): timestamped per-patch video blocks and DeepStack
features reach vLLM's model as the learner sees them.

Runs only in the vLLM virtualenv (.venv-vllm, `make test-vllm`); elsewhere the module is skipped.
"""
import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402

from engine.errors import VideoRequestError  # noqa: E402
from engine.learner.policy import token_logprobs  # noqa: E402
from engine.model.tiny import save_tiny  # noqa: E402
from engine.model.video_tokens import VIDEO_BLOCK, video_prompt_ids  # noqa: E402
from engine.rollout.backend import Request, SamplingParams  # noqa: E402
from engine.rollout.batch import Sample, VideoInput  # noqa: E402
from engine.video.spec import QWEN3_VL  # noqa: E402
from engine.learner.batch import BatchIds, learner_batch  # noqa: E402

LOGPROB_TOL = 1e-3


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "qwen3", seed=0, arch="qwen3_vl")


def video(grid, times, seed):
    g = torch.Generator().manual_seed(seed)
    t, h, w = grid
    spg = 2 * (times[-1] - times[0]) / max(len(times) - 1, 1) or 1.0
    return VideoInput(torch.randn(t * h * w, QWEN3_VL.patch_width, generator=g), grid, spg, times[0], times[-1],
                      tuple(times))


def prompt(tok, videos, text="What happens?"):
    body = "<|im_start|>user\n" + VIDEO_BLOCK * len(videos) + f"{text}<|im_end|>\n<|im_start|>assistant\n"
    return video_prompt_ids(body, videos, QWEN3_VL, tok)


def learner_gap(model, tok, samples) -> float:
    T = learner_batch(samples, BatchIds.of(tok, model.config))
    with torch.no_grad():
        logp = token_logprobs(model, T)
    m = T["loss_mask"].bool()
    return (logp[m] - T["rollout_logp"][m]).abs().max().item()


def test_vllm_qwen3_video_logprobs_match_the_learner(backend, tok, ref):
    a = video((2, 4, 6), (0.0, 1.0, 2.0, 3.0), seed=0)
    b = video((3, 6, 4), (12.0, 12.5, 13.0, 13.5, 14.0), seed=1)  # odd frame count, far into its file
    for vids in ([a], [a, b]):
        p = prompt(tok, vids)
        g = backend.generate([Request(p, vids, SamplingParams(max_new_tokens=12, seed=11))])[0]
        assert len(g.token_ids) >= 1
        gap = learner_gap(ref, tok, [Sample(0, "r", p, g.token_ids, g.logprobs, vids[0], videos=vids)])
        print(f"learner vs vLLM (Qwen3-VL) logp gap: max {gap:.2e}")
        assert gap <= LOGPROB_TOL, gap


def test_vllm_qwen3_tool_observation_mid_context_matches_the_learner(backend, tok, ref):
    first = video((2, 4, 6), (0.0, 2.0, 4.0, 6.0), seed=2)
    p = prompt(tok, [first], "Find the red square.")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    t1 = backend.generate([Request(p, [first], SamplingParams(max_new_tokens=8, seed=1, stop_token_ids=(im_end,)))])[0]
    zoom = video((2, 6, 4), (4.0, 4.5, 5.0, 5.5), seed=3)
    obs = video_prompt_ids("<|im_end|>\n<|im_start|>user\n<tool_response>\nframe_zoom: 4-6 s\n" + VIDEO_BLOCK +
                           "\n</tool_response><|im_end|>\n<|im_start|>assistant\n", [zoom], QWEN3_VL, tok)
    if t1.token_ids and t1.token_ids[-1] == im_end:
        obs = obs[1:]
    t2 = backend.generate([Request(p + t1.token_ids + obs, [first, zoom], SamplingParams(max_new_tokens=10, seed=2))])[0]
    sample = Sample(0, "r", p, t1.token_ids + obs + t2.token_ids, t1.logprobs + [0.0] * len(obs) + t2.logprobs, first,
                    response_mask=[1] * len(t1.token_ids) + [0] * len(obs) + [1] * len(t2.token_ids),
                    videos=[first, zoom])
    gap = learner_gap(ref, tok, [sample])
    print(f"learner vs vLLM (Qwen3-VL, tool turn) logp gap: max {gap:.2e}")
    assert gap <= LOGPROB_TOL, gap


def test_vllm_qwen3_time_is_text_the_model_reads(backend, tok):
    """The same pixels stamped at other times are another prompt: the timestamps reach the model."""
    params = SamplingParams(max_new_tokens=1, temperature=1.0, seed=0)
    early = video((2, 4, 6), (0.0, 1.0, 2.0, 3.0), seed=4)
    late = video((2, 4, 6), (40.0, 41.0, 42.0, 43.0), seed=4)
    a = backend.generate([Request(prompt(tok, [early]), [early], params)])[0]
    again = backend.generate([Request(prompt(tok, [early]), [early], params)])[0]
    b = backend.generate([Request(prompt(tok, [late]), [late], params)])[0]
    assert a.logprobs == again.logprobs and a.logprobs != b.logprobs


def test_vllm_qwen3_layout_mismatch_is_a_typed_error(backend, tok):
    v = video((2, 4, 6), (0.0, 1.0, 2.0, 3.0), seed=5)
    p = prompt(tok, [v])
    pad = tok.convert_tokens_to_ids("<|video_pad|>")
    short = p.copy()
    short.remove(pad)
    with pytest.raises(VideoRequestError, match="blocks"):
        backend.generate([Request(short, [v])])
    shifted = video((2, 4, 6), (5.0, 6.0, 7.0, 8.0), seed=5)  # the prompt's timestamps are another video's
    with pytest.raises(VideoRequestError, match="blocks"):
        backend.generate([Request(p, [shifted])])
