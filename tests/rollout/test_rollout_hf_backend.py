"""The transformers backend: log-probs vs a full forward, per-request seeds, stops, suppression, top-p, weights."""
import copy

import pytest
import torch

from engine.errors import VideoRequestError
from engine.learner.policy import token_logprobs
from engine.rollout.backend import Request, SamplingParams
from engine.rollout.batch import Sample
from engine.rollout.hf_backend import HFBackend, _Row
from engine.learner.batch import BatchIds, learner_batch


@pytest.fixture(scope="module")
def prompts(session):
    """Two real prompts (different synthetic videos and questions)."""
    return [session.rollout.prepare(r) for r in session.train_rows[:2]]


def req(prompt, **kw):
    return Request(prompt.prompt_ids, prompt.videos, SamplingParams(**{"max_new_tokens": 10, **kw}))


def test_logprobs_match_a_full_forward(session, prompts):
    be = HFBackend(session.model, session.tokenizer)
    gens = be.generate([req(prompts[0], seed=1, temperature=0.7), req(prompts[1], seed=2, temperature=0.7)])
    samples = [Sample(i, "r", p.prompt_ids, g.token_ids, g.logprobs, p.video) for i, (p, g) in enumerate(zip(prompts, gens))]
    T = learner_batch(samples, BatchIds.of(session.tokenizer, session.model.config))
    with torch.no_grad():
        ref = token_logprobs(session.model, T, temperature=0.7)
    m = T["loss_mask"].bool()
    assert m.sum() == sum(len(g.token_ids) for g in gens)
    assert torch.allclose(ref[m], T["rollout_logp"][m], atol=1e-4)


def test_seeded_request_reproduces_alone_and_in_a_batch(session, prompts):
    be = HFBackend(session.model, session.tokenizer)
    alone = be.generate([req(prompts[1], seed=7)])[0]
    batched = be.generate([req(prompts[0], seed=3, top_p=0.8), req(prompts[1], seed=7), req(prompts[0], seed=8)])
    assert batched[1].token_ids == alone.token_ids
    assert batched[1].logprobs == pytest.approx(alone.logprobs, abs=1e-4)
    assert batched[0].token_ids != batched[2].token_ids  # same prompt, different seeds


def cache_free(be, r):
    """Row `r` as a loop with no KV cache at all would write it: every token from a fresh full forward over the
    prompt and the tokens so far, drawn with the same per-request generator."""
    g = torch.Generator().manual_seed(r.params.seed)
    row = _Row(0, r.params, g, max((len(s) for s in r.params.stop), default=0), [], [])
    while row.finish_reason is None:
        logits, *_ = be._prefill([Request(r.prompt_ids + row.ids, r.videos, r.params)], [None], "cpu", 1)
        (t,), (lp,) = be._sample(logits, [row])
        row.ids.append(t)
        row.logprobs.append(lp)
        be._check_stop(row)
    return row


def test_decode_gives_the_tokens_of_a_loop_without_cache(session, prompts):
    # Greedy and seeded rows; a shared prompt (prefilled once, its KV copied to both rows); rows that leave
    # the batch at different steps (the cache drops them mid-decode).
    be = HFBackend(session.model, session.tokenizer, prefix_cache_bytes=0)
    reqs = [req(prompts[0], seed=1, temperature=0.7, max_new_tokens=14), req(prompts[1], seed=2, max_new_tokens=5),
            req(prompts[0], seed=3, temperature=0.0, max_new_tokens=9), req(prompts[1], seed=4, top_p=0.9)]
    for r, got in zip(reqs, be.generate(reqs)):
        want = cache_free(be, r)
        assert got.token_ids == want.ids
        assert got.logprobs == pytest.approx(want.logprobs, abs=1e-4)
        assert got.finish_reason == want.finish_reason


def greedy(be, prompt, n=8):
    return be.generate([req(prompt, max_new_tokens=n, temperature=1e-4, seed=0)])[0]


def test_stop_token_and_stop_string(session, prompts):
    be = HFBackend(session.model, session.tokenizer)
    g = greedy(be, prompts[0])
    ids = g.token_ids
    assert g.finish_reason == "length" and len(ids) == 8
    k = next(i for i in range(2, 8) if ids[i] not in ids[:i])  # first fresh token from position 2 on
    by_token = be.generate([req(prompts[0], max_new_tokens=8, temperature=1e-4, stop_token_ids=(ids[k],))])[0]
    assert by_token.token_ids == ids[: k + 1] and by_token.finish_reason == "stop" and by_token.stop == ids[k]
    text = session.tokenizer.decode(ids[k : k + 2])
    first = session.tokenizer.decode(ids[: k + 2]).find(text)
    by_string = be.generate([req(prompts[0], max_new_tokens=8, temperature=1e-4, stop=(text,))])[0]
    assert by_string.stop == text and by_string.finish_reason == "stop"
    got = session.tokenizer.decode(by_string.token_ids)
    assert got.endswith(text) and got.find(text) == first  # stops on the first occurrence, string kept


def test_top_p_tiny_is_greedy(session, prompts):
    be = HFBackend(session.model, session.tokenizer)
    g = greedy(be, prompts[1])
    for seed in (1, 2):
        assert be.generate([req(prompts[1], max_new_tokens=8, top_p=1e-6, seed=seed)])[0].token_ids == g.token_ids


def test_a_sampled_placeholder_ends_the_continuation_before_it(session, prompts):
    # Placeholders are not masked out of the distribution (that would change the log-probs); a sampled
    # one ends the continuation, cut from the output.
    model = copy.deepcopy(session.model)
    pad = model.config.video_token_id
    # Make <|video_pad|> overwhelmingly likely at every position: an LM head with a bias on its row (a row of
    # large weights alone would depend on the sign of each hidden state).
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[pad] = 1e4
    model.lm_head = head
    be = HFBackend(model, session.tokenizer)
    assert {pad, session.tokenizer.pad_token_id} <= be.placeholder_ids
    for seed in range(3):
        g = be.generate([req(prompts[0], seed=seed)])[0]
        assert not be.placeholder_ids & set(g.token_ids)
        assert g.finish_reason == "stop" and g.stop in be.placeholder_ids
        assert len(g.logprobs) == len(g.token_ids)


def test_load_weights_in_place(session):
    model = copy.deepcopy(session.model)
    be = HFBackend(model, session.tokenizer)
    w = model.lm_head.weight
    ptr = w.data_ptr()
    be.load_weights([("lm_head.weight", torch.zeros_like(w))], version=3)
    assert w.data_ptr() == ptr and torch.count_nonzero(w) == 0 and be.weight_version == 3
    with pytest.raises(KeyError, match="nope"):
        be.load_weights([("nope", torch.zeros(1))], 4)


def test_bad_requests_are_typed_errors(session, prompts):
    be = HFBackend(session.model, session.tokenizer)
    with pytest.raises(VideoRequestError, match="video"):
        be.generate([Request(prompts[0].prompt_ids, [], SamplingParams())])
    with pytest.raises(ValueError, match="empty prompt"):
        be.generate([Request([], [], SamplingParams())])


def test_plain_transformers_generate_gives_the_backends_greedy_answer(session, prompts):
    # The model folder loaded by AutoModelForImageTextToText, run by transformers' own generate() with its own
    # M-RoPE positions (get_rope_index) and cache, writes token for token what the backend writes greedily. The
    # clip goes in as vthink's patches: the AutoProcessor's video processor needs torchvision, which imports on this
    # machine's CPU torch only in the vLLM test venv (tests/rollout_vllm/test_plain_transformers_processor.py).
    from transformers import AutoModelForImageTextToText

    from engine.model import model_dir

    plain = AutoModelForImageTextToText.from_pretrained(model_dir(None), dtype=torch.float32).eval()
    be = HFBackend(session.model, session.tokenizer)
    for p in prompts:
        want = be.generate([req(p, max_new_tokens=16, temperature=0.0)])[0]
        (v,) = p.videos
        with torch.no_grad():
            out = plain.generate(input_ids=torch.tensor([p.prompt_ids]),
                                 attention_mask=torch.ones(1, len(p.prompt_ids), dtype=torch.long),
                                 pixel_values_videos=v.pixel_values, video_grid_thw=torch.tensor([v.grid_thw]),
                                 second_per_grid_ts=torch.tensor([v.second_per_grid_t]), do_sample=False,
                                 max_new_tokens=len(want.token_ids), eos_token_id=None, pad_token_id=session.tokenizer.pad_token_id,
                                 output_logits=True, return_dict_in_generate=True)
        got = out.sequences[0, len(p.prompt_ids):]
        assert got.tolist() == want.token_ids
        # and nearly the same distributions, which the tiny model's greedy tokens alone would barely test. Not to
        # 1e-4: transformers 5.x places a video's temporal ids by another rule than the original Qwen2.5-VL one
        # vthink follows (README, "Positions and log-probs"); on these prompts that moves log-probs by ~5e-3.
        logp = torch.stack([step[0].log_softmax(-1) for step in out.logits]).gather(-1, got[:, None]).squeeze(-1)
        assert logp.tolist() == pytest.approx(want.logprobs, abs=2e-2)
