"""The transformers backend: log-probs vs a full forward, per-request seeds, stops, suppression, top-p, weights."""
import copy

import pytest
import torch

from engine.errors import VideoRequestError
from engine.learner.policy import token_logprobs
from engine.rollout.backend import Request, SamplingParams
from engine.rollout.batch import Sample
from engine.rollout.hf_backend import HFBackend
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
