"""No work twice in the transformers backend: a group's first turn is prefilled once, a continued turn prefills
only its new tokens on the kept KV, and the vision tower runs only on new, distinct videos — with the same
tokens and log-probs as a full re-prefill of everything, and as the learner's recomputation."""
import pytest
import torch

from engine.learner.policy import token_logprobs
from engine.rollout.backend import Request, SamplingParams
from engine.rollout.batch import Sample
from engine.rollout.hf_backend import HFBackend
from engine.tools import observation_token_ids
from engine.tools.registry import Observation
from engine.learner.batch import BatchIds, learner_batch


# Turns that end on a stop string are the ones a caller continues (a tool call, a re-look); the random tiny
# model writes one of these letters within a few tokens.
STOPS = ("e", "o", "a", "i", "t")


def _two_turns(be, prompt, observation, g=3):
    """Turn 1: g samples of one prompt; turn 2: each continues with the same observation (a new video)."""
    first = be.generate([Request(prompt.prompt_ids, prompt.videos,
                                 SamplingParams(max_new_tokens=8, temperature=0.9, seed=11 + k, stop=STOPS))
                         for k in range(g)])
    ids, videos = observation
    second = be.generate([Request(prompt.prompt_ids + f.token_ids + ids, prompt.videos + videos,
                                  SamplingParams(max_new_tokens=8, temperature=0.9, seed=21 + k))
                          for k, f in enumerate(first)])
    return first, second


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl"])
def test_continued_turns_reuse_kv_and_match_a_full_prefill(arch, request):
    """Qwen3-VL too: its prompt and observation write a timestamp before each temporal patch, and its tower's
    DeepStack features follow the kept KV."""
    s = request.getfixturevalue("session" if arch == "qwen2_5_vl" else "qwen3_session")
    assert s.rollout.spec.arch == arch == s.model.config.model_type
    prompt = s.rollout.prepare(s.train_rows[0])
    clip = s.rollout.video.window(str(s.train_rows[0].video), 1.0, 3.0, s.rollout.frame_policy)
    observation = observation_token_ids(Observation("frame_zoom: frames 1-3", [clip]), s.tokenizer, s.rollout.spec)

    cold = HFBackend(s.model, s.tokenizer, prefix_cache_bytes=0)  # re-prefills everything every call
    warm = HFBackend(s.model, s.tokenizer)
    c1, c2 = _two_turns(cold, prompt, observation)
    w1, w2 = _two_turns(warm, prompt, observation)

    assert all(f.finish_reason == "stop" and f.stop in STOPS for f in w1), "turn 1 must end on the stop string"
    for a, b in zip(c1 + c2, w1 + w2):
        assert a.token_ids == b.token_ids
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-5
    assert len({tuple(f.token_ids) for f in w1}) > 1  # distinct seeds really sampled distinct turns

    # Work: both ran the group's shared prompt once; the cold backend then re-ran each continuation in full,
    # the warm one only the last sampled token plus the observation.
    obs_len = len(observation[0])
    g, n_prompt = 3, len(prompt.prompt_ids)
    assert cold.counters["prefill_tokens"] == n_prompt + sum(n_prompt + len(f.token_ids) + obs_len for f in c1)
    assert warm.counters["prefill_tokens"] == n_prompt + g * (1 + obs_len)
    assert warm.counters["reused_tokens"] == sum(n_prompt + len(f.token_ids) - 1 for f in w1)
    # Tower runs: identical videos in one call are encoded once, so the cold backend ran the prompt video
    # twice (once per call) and the observation once; the warm one never re-ran the prompt video.
    assert (cold.counters["videos_encoded"], cold.counters["videos_reused"]) == (3, 2 * g - 2)
    assert (warm.counters["videos_encoded"], warm.counters["videos_reused"]) == (2, g - 1)
    # Continuations used their entries and ended on no stop string. An entry holds what was fed, all but the last
    # sampled token, so first turns alike up to it filed identical entries, and their continuations all take the
    # same one (the rest are dropped when the rollout ends).
    assert len(warm.prefixes) == g - len({tuple(f.token_ids[:-1]) for f in w1})

    # And both agree with the learner's recomputation of the whole trajectory.
    samples = [Sample(k, "r", prompt.prompt_ids, f.token_ids + observation[0] + c.token_ids,
                      f.logprobs + [0.0] * obs_len + c.logprobs, prompt.video,
                      response_mask=[1] * len(f.token_ids) + [0] * obs_len + [1] * len(c.token_ids),
                      videos=prompt.videos + observation[1])
               for k, (f, c) in enumerate(zip(w1, w2))]
    T = learner_batch(samples, BatchIds.of(s.tokenizer, s.model.config))
    with torch.no_grad():
        ref = token_logprobs(s.model, T, temperature=0.9)
    m = T["loss_mask"].bool()
    assert torch.allclose(ref[m], T["rollout_logp"][m], atol=1e-4)


def test_new_weights_drop_kept_prefixes(session):
    s = session
    prompt = s.rollout.prepare(s.train_rows[1])
    be = HFBackend(s.model, s.tokenizer)
    be.generate([Request(prompt.prompt_ids, prompt.videos, SamplingParams(max_new_tokens=8, temperature=0, stop=STOPS))])
    assert len(be.prefixes) == 1
    be.load_weights([(n, p.detach().clone()) for n, p in list(s.model.named_parameters())[:1]], version=1)
    assert len(be.prefixes) == 0
