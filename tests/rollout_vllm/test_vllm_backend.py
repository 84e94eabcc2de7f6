"""VLLMBackend against a real vLLM engine (CPU build) and an independent float32 transformers forward.

Runs only in the vLLM virtualenv (.venv-vllm, `make test-vllm`); elsewhere the module is skipped.
One engine serves the whole module (startup is the expensive part); the weight-loading test puts
the original weights back when it is done.
"""
import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402

from engine.errors import VideoRequestError  # noqa: E402
from engine.model import expand_vision_pads  # noqa: E402
from engine.model.tiny import build_tiny_model, save_tiny  # noqa: E402
from engine.learner.policy import token_logprobs  # noqa: E402
from engine.native import mrope_config  # noqa: E402
from engine.rollout.backend import Request, SamplingParams, weights_digest  # noqa: E402
from engine.rollout.batch import Sample, VideoInput  # noqa: E402
from engine.learner.batch import BatchIds, learner_batch  # noqa: E402
from tests.native.mrope_original import original_rope_config, original_rope_index  # noqa: E402

LOGPROB_TOL = 1e-3  # fp32 vs fp32; observed differences are ~1e-6
MERGE = 2


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "seed0", seed=0)


@pytest.fixture(scope="module")
def ids(tok):
    c = tok.convert_tokens_to_ids
    return dict(video=c("<|video_pad|>"), start=c("<|vision_start|>"), end=c("<|vision_end|>"),
                im_end=c("<|im_end|>"), placeholders={c(t) for t in ("<|video_pad|>", "<|image_pad|>",
                                                                     "<|vision_start|>", "<|vision_end|>",
                                                                     "<|endoftext|>")})


def text_prompt(tok, text):
    return tok(f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]


def video_prompt(tok, ids, videos, text="What happens in the video?"):
    pre = tok("<|im_start|>user\n", add_special_tokens=False)["input_ids"]
    body = []
    for _ in videos:
        body += [ids["start"], ids["video"], ids["end"]]
    post = tok(f"{text}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    return expand_vision_pads(pre + body + post, [v.grid_thw for v in videos], MERGE, ids["video"])


def random_video(grid, second_per_grid_t, seed):
    g = torch.Generator().manual_seed(seed)
    t, h, w = grid
    return VideoInput(torch.randn(t * h * w, 3 * 2 * 14 * 14, generator=g), grid, second_per_grid_t)


@torch.no_grad()
def ref_logits(model, ids, prompt, produced, videos=()):
    """Next-token logits at every produced position, from one full forward (no KV cache), at the positions
    of the original Qwen2.5-VL M-RoPE rule (the one vLLM implements)."""
    full = torch.tensor([prompt + produced])
    kw = {}
    grids = spg = None
    if videos:
        grids = torch.tensor([v.grid_thw for v in videos])
        spg = torch.tensor([v.second_per_grid_t for v in videos])
        kw = dict(pixel_values_videos=torch.cat([v.pixel_values for v in videos]), video_grid_thw=grids,
                  second_per_grid_ts=spg, mm_token_type_ids=(full == ids["video"]).long() * 2)
    pos, _ = original_rope_index(full, None, grids, spg, **original_rope_config(model.config))
    logits = model(input_ids=full, attention_mask=torch.ones_like(full), position_ids=pos, **kw).logits[0].float()
    return logits[len(prompt) - 1: len(prompt) - 1 + len(produced)]


def ref_logprobs(model, ids, prompt, produced, temperature, videos=()):
    lp = (ref_logits(model, ids, prompt, produced, videos) / temperature).log_softmax(-1)
    return lp.gather(-1, torch.tensor(produced)[:, None])[:, 0]


@torch.no_grad()
def ref_greedy(model, ids, prompt, n):
    """Greedy continuation; a placeholder id ends it, cut (the backend contract)."""
    out: list[int] = []
    for _ in range(n):
        full = torch.tensor([prompt + out])
        nxt = int(model(input_ids=full).logits[0, -1].float().argmax())
        if nxt in ids["placeholders"]:
            break
        out.append(nxt)
    return out


def test_vllm_generate_returns_contract_structure(backend, tok):
    reqs = [Request(text_prompt(tok, "Describe the scene."), params=SamplingParams(max_new_tokens=n, seed=i))
            for i, n in enumerate((1, 5, 12))]
    gens = backend.generate(reqs)
    assert len(gens) == 3
    for req, g in zip(reqs, gens):
        assert len(g.token_ids) == len(g.logprobs) >= 1
        assert len(g.token_ids) <= req.params.max_new_tokens
        assert all(isinstance(t, int) for t in g.token_ids)
        assert all(lp <= 0.0 and lp > -1e4 for lp in g.logprobs)
        assert g.finish_reason in ("stop", "length")
        if g.finish_reason == "length":
            assert len(g.token_ids) == req.params.max_new_tokens and g.stop is None
        else:
            assert g.stop == g.token_ids[-1]
    assert backend.generate([]) == []


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_vllm_logprobs_match_transformers(backend, tok, ref, ids, temperature):
    prompts = [text_prompt(tok, "Where is the red ball?"), text_prompt(tok, "Count the objects, then answer.")]
    gens = backend.generate([Request(p, params=SamplingParams(max_new_tokens=16, temperature=temperature, seed=7))
                             for p in prompts])
    for p, g in zip(prompts, gens):
        want = ref_logprobs(ref, ids, p, g.token_ids, temperature)
        assert torch.allclose(torch.tensor(g.logprobs), want, atol=LOGPROB_TOL), (g.logprobs, want.tolist())


def test_vllm_greedy_matches_transformers_argmax(backend, tok, ref, ids):
    p = text_prompt(tok, "Answer with one letter.")
    g = backend.generate([Request(p, params=SamplingParams(max_new_tokens=10, temperature=0.0))])[0]
    assert g.token_ids == ref_greedy(ref, ids, p, len(g.token_ids))


def test_vllm_same_seed_same_output_any_batch(backend, tok):
    p = text_prompt(tok, "What color is the square?")
    other = text_prompt(tok, "Something else entirely, longer prompt here.")
    req = Request(p, params=SamplingParams(max_new_tokens=16, seed=1234))
    alone = backend.generate([req])[0]
    batched = backend.generate([Request(other, params=SamplingParams(max_new_tokens=8, seed=5)), req])[1]
    assert alone.token_ids == backend.generate([req])[0].token_ids
    assert batched.token_ids == alone.token_ids
    assert batched.logprobs == pytest.approx(alone.logprobs, abs=1e-5)
    different = backend.generate([Request(p, params=SamplingParams(max_new_tokens=16, seed=1235))])[0]
    assert different.token_ids != alone.token_ids


def test_vllm_group_of_consecutive_seeds_equals_separate_requests(backend, tok):
    """G requests with seeds s..s+G-1 go to vLLM as one n=G request; results equal one-by-one calls."""
    p = text_prompt(tok, "Which object moves first?")
    group = [Request(p, params=SamplingParams(max_new_tokens=12, seed=100 + i)) for i in range(4)]
    together = backend.generate(group[::-1])[::-1]  # order of the requests must not matter either
    separate = [backend.generate([r])[0] for r in group]
    assert [g.token_ids for g in together] == [g.token_ids for g in separate]
    for a, b in zip(together, separate):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    assert len({tuple(g.token_ids) for g in together}) > 1  # distinct seeds sample distinct continuations


def test_vllm_stop_token_ids_end_and_are_kept(backend, tok, ref, ids):
    p = text_prompt(tok, "List the colours.")
    free = backend.generate([Request(p, params=SamplingParams(max_new_tokens=12, temperature=0.0))])[0]
    assert free.finish_reason == "length"
    k = next(i for i in range(2, len(free.token_ids)) if free.token_ids[i] not in free.token_ids[:i])
    stop_id = free.token_ids[k]
    g = backend.generate([Request(p, params=SamplingParams(max_new_tokens=12, temperature=0.0,
                                                           stop_token_ids=(stop_id,)))])[0]
    assert g.token_ids == free.token_ids[: k + 1]
    assert g.finish_reason == "stop" and g.stop == stop_id
    assert g.logprobs == pytest.approx(free.logprobs[: k + 1], abs=1e-5)


def test_vllm_stop_strings_end_and_are_kept(backend, tok):
    p = text_prompt(tok, "Explain what you see.")
    free = backend.generate([Request(p, params=SamplingParams(max_new_tokens=16, temperature=0.0))])[0]
    text = tok.decode(free.token_ids[2:4], skip_special_tokens=True)
    assert text.strip(), "need a visible stop string"
    # Independent expectation: the shortest prefix of the free run whose text contains the stop string.
    end = next(j for j in range(1, len(free.token_ids) + 1)
               if text in tok.decode(free.token_ids[:j], skip_special_tokens=True))
    g = backend.generate([Request(p, params=SamplingParams(max_new_tokens=16, temperature=0.0,
                                                           stop=(text, "never-produced-string")))])[0]
    assert g.token_ids == free.token_ids[:end]
    assert g.finish_reason == "stop" and g.stop == text
    assert text in tok.decode(g.token_ids, skip_special_tokens=True)


def test_vllm_load_weights_in_place_follows_new_weights(backend, tok, ref, ids):
    # Longer than several KV blocks (128 tokens on CPU), so a stale prefix cache would show.
    p = text_prompt(tok, "Is the circle left of the square? " * 60)
    assert len(p) > 3 * 128
    greedy = Request(p, params=SamplingParams(max_new_tokens=10, temperature=0.0))
    sampled = Request(p, params=SamplingParams(max_new_tokens=10, temperature=1.0, seed=3))
    before = backend.generate([greedy])[0]
    engine, pointers = backend.llm, backend.param_pointers()
    other, _ = build_tiny_model(seed=1)
    try:
        backend.load_weights(other.named_parameters(), version=1)
        assert backend.weight_version == 1
        assert backend.llm is engine and backend.param_pointers() == pointers  # same engine, same storage
        after = backend.generate([greedy])[0]
        assert after.token_ids == ref_greedy(other, ids, p, len(after.token_ids))
        assert after.token_ids != before.token_ids
        s = backend.generate([sampled])[0]
        want = ref_logprobs(other, ids, p, s.token_ids, 1.0)
        assert torch.allclose(torch.tensor(s.logprobs), want, atol=LOGPROB_TOL)
        # A partial update (lm_head only) changes exactly that part.
        backend.load_weights([("lm_head.weight", ref.lm_head.weight)], version=2)
        mixed, _ = build_tiny_model(seed=1)
        mixed.lm_head.weight.data.copy_(ref.lm_head.weight.data)
        assert backend.generate([greedy])[0].token_ids == ref_greedy(mixed, ids, p, 10)
    finally:
        backend.load_weights(ref.named_parameters(), version=3)
    assert backend.generate([greedy])[0].token_ids == before.token_ids


def test_vllm_load_weights_rejects_bad_names_and_shapes_without_change(backend, tok, ref):
    p = text_prompt(tok, "Name the shape.")
    greedy = Request(p, params=SamplingParams(max_new_tokens=8, temperature=0.0))
    before, version = backend.generate([greedy])[0], backend.weight_version
    with pytest.raises(ValueError, match="model.nonexistent.weight"):
        backend.load_weights([("lm_head.weight", ref.lm_head.weight * 0), ("model.nonexistent.weight",
                                                                           torch.zeros(3))], version=99)
    with pytest.raises(ValueError, match="shape"):
        backend.load_weights([("lm_head.weight", torch.zeros(3, 3))], version=99)
    assert backend.weight_version == version
    assert backend.generate([greedy])[0].token_ids == before.token_ids


@pytest.mark.parametrize("second_per_grid_t", [1.0, 0.5])
def test_vllm_video_logprobs_match_transformers(backend, tok, ref, ids, second_per_grid_t):
    videos = [random_video((2, 4, 6), second_per_grid_t, seed=0), random_video((2, 6, 4), second_per_grid_t, seed=1)]
    for vids in (videos[:1], videos):  # one video, then two of different shapes in one prompt
        p = video_prompt(tok, ids, vids)
        g = backend.generate([Request(p, list(vids), SamplingParams(max_new_tokens=12, seed=11))])[0]
        want = ref_logprobs(ref, ids, p, g.token_ids, 1.0, vids)
        assert torch.allclose(torch.tensor(g.logprobs), want, atol=LOGPROB_TOL), (g.logprobs, want.tolist())


def test_vllm_video_content_and_time_reach_the_model(backend, tok, ids):
    """Different pixels, or the same pixels at a different frame rate, change what the model sees."""
    base = random_video((2, 4, 6), 1.0, seed=0)
    p = video_prompt(tok, ids, [base])
    params = SamplingParams(max_new_tokens=1, temperature=1.0, seed=0)
    lp = backend.generate([Request(p, [base], params)])[0]
    again = backend.generate([Request(p, [random_video((2, 4, 6), 1.0, seed=0)], params)])[0]
    other = backend.generate([Request(p, [random_video((2, 4, 6), 1.0, seed=5)], params)])[0]
    slower = backend.generate([Request(p, [random_video((2, 4, 6), 0.5, seed=0)], params)])[0]
    assert again.logprobs == lp.logprobs
    assert other.logprobs != lp.logprobs
    assert slower.logprobs != lp.logprobs


def test_vllm_real_decoded_clip_matches_transformers(backend, tok, ref, ids, tmp_path):
    """A clip decoded and patchified by engine.video (PyAV) goes through vLLM as transformers sees it."""
    from engine.data.synthetic import make_dataset
    from engine.data.dataset import load_videos
    from engine.video import FramePolicy, VideoService

    paths = make_dataset(tmp_path / "data", num_videos=1, duration_s=2.0, seed=0)
    record = next(iter(load_videos(paths.dir).values()))
    clip = VideoService("cpu", backend="pyav").sample(str(record.path), FramePolicy(fps=2.0, min_frames=4, max_frames=4))
    video = VideoInput(clip.pixel_values.cpu(), tuple(int(x) for x in clip.grid_thw), float(clip.second_per_grid_t))
    p = video_prompt(tok, ids, [video])
    g = backend.generate([Request(p, [video], SamplingParams(max_new_tokens=10, seed=2))])[0]
    want = ref_logprobs(ref, ids, p, g.token_ids, 1.0, [video])
    assert torch.allclose(torch.tensor(g.logprobs), want, atol=LOGPROB_TOL)


def test_vllm_video_pad_mismatch_is_a_typed_error(backend, tok, ids):
    video = random_video((2, 4, 6), 1.0, seed=0)
    p = video_prompt(tok, ids, [video])
    with pytest.raises(VideoRequestError, match="1 runs of <\\|video_pad\\|>"):
        backend.generate([Request(p, [video, video])])
    short = p.copy()
    short.remove(ids["video"])
    with pytest.raises(VideoRequestError, match="needs 12"):
        backend.generate([Request(short, [video])])
    with pytest.raises(ValueError, match="top_p"):
        backend.generate([Request(p, [video], SamplingParams(top_p=0.0))])


def learner_logprobs(model, ids, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """(learner log-probs, rollout log-probs) on the loss tokens: the learner's own batch and kernel path."""
    T = learner_batch(samples, BatchIds(pad=0, video=ids["video"], mrope=mrope_config(model.config)))
    logp = token_logprobs(model, T)
    m = T["loss_mask"].bool()
    m[:, 0] = False
    return logp[m], T["rollout_logp"][m]


def test_vllm_long_video_matches_the_learner(backend, tok, ref, ids):
    # 32 frames at 3 fps: 16 temporal patches of 2/3 s. Temporal ids reach 20 while spatial ones stay
    # below 3, so any rule that places the text after the video by its spatial extent disagrees.
    video = random_video((16, 4, 4), 2 / 3, seed=3)
    p = video_prompt(tok, ids, [video])
    g = backend.generate([Request(p, [video], SamplingParams(max_new_tokens=16, seed=4))])[0]
    assert len(g.token_ids) >= 1
    got, want = learner_logprobs(ref, ids, [Sample(0, "r", p, g.token_ids, g.logprobs, video, videos=[video])])
    gap = (got - want).abs().max().item()
    print(f"learner vs vLLM logp gap: max {gap:.2e} over {got.numel()} tokens")
    assert gap <= LOGPROB_TOL, gap


def test_vllm_tool_observation_mid_context_matches_the_learner(backend, tok, ref, ids):
    # Turn 1 on the prompt video; a tool observation brings a second video (another grid, 1.5 s per
    # temporal patch); turn 2 continues after it. Both turns' log-probs equal the learner's.
    first = random_video((4, 4, 6), 0.5, seed=7)
    p = video_prompt(tok, ids, [first], "Find the moment the square turns red.")
    t1 = backend.generate([Request(p, [first], SamplingParams(max_new_tokens=8, seed=1,
                                                              stop_token_ids=(ids["im_end"],)))])[0]
    obs_video = random_video((6, 6, 4), 1.5, seed=8)
    obs = tok("<|im_end|>\n<|im_start|>user\n<tool_response>\n", add_special_tokens=False)["input_ids"]
    obs = [t for t in obs if not (t1.token_ids and t1.token_ids[-1] == ids["im_end"] and t == ids["im_end"])]
    obs += expand_vision_pads([ids["start"], ids["video"], ids["end"]], [obs_video.grid_thw], MERGE, ids["video"])
    obs += tok("\n</tool_response><|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    ctx = p + t1.token_ids + obs
    t2 = backend.generate([Request(ctx, [first, obs_video], SamplingParams(max_new_tokens=12, seed=2))])[0]
    response = t1.token_ids + obs + t2.token_ids
    mask = [1] * len(t1.token_ids) + [0] * len(obs) + [1] * len(t2.token_ids)
    sample = Sample(0, "r", p, response, t1.logprobs + [0.0] * len(obs) + t2.logprobs, first,
                    response_mask=mask, videos=[first, obs_video])
    got, want = learner_logprobs(ref, ids, [sample])
    assert got.numel() == len(t1.token_ids) + len(t2.token_ids)
    gap = (got - want).abs().max().item()
    print(f"learner vs vLLM logp gap: max {gap:.2e} over {got.numel()} tokens")
    assert gap <= LOGPROB_TOL, gap


def test_vllm_placeholders_end_a_turn_and_eos_is_the_callers(backend, tok, ref, ids):
    """A sampled placeholder is cut and ends the continuation; the model's own EOS ids do not stop it."""
    p = text_prompt(tok, "Name the shape.")
    with torch.no_grad():  # the final hidden state at the prompt's end: a lm_head row along it forces the first token
        h = ref.model(input_ids=torch.tensor([p])).last_hidden_state[0, -1]
    try:
        for forced, stop_ids, cut in ((ids["video"], (), True), (ids["im_end"], (), False),
                                      (ids["im_end"], (ids["im_end"],), False)):
            w = ref.lm_head.weight.detach().clone()
            w[forced] += 1000 * h / h.norm()
            backend.load_weights([("lm_head.weight", w)], version=backend.weight_version + 1)
            g = backend.generate([Request(p, params=SamplingParams(max_new_tokens=6, seed=0,
                                                                   stop_token_ids=stop_ids))])[0]
            if cut:
                assert g.finish_reason == "stop" and g.stop == forced and forced not in g.token_ids
            elif stop_ids:
                assert g.finish_reason == "stop" and g.token_ids[-1] == forced == g.stop
            else:  # <|im_end|> is the tiny model's generation-config EOS, yet only the caller's ids stop
                assert g.finish_reason == "length" and forced in g.token_ids
            assert len(g.logprobs) == len(g.token_ids)
    finally:
        backend.load_weights([("lm_head.weight", ref.lm_head.weight)], version=backend.weight_version + 1)


def test_vllm_weights_digest_tracks_what_the_engine_holds(backend, ref):
    assert backend.weights_digest() == weights_digest(ref.named_parameters())
    other, _ = build_tiny_model(seed=2)
    try:
        backend.load_weights([("lm_head.weight", other.lm_head.weight)], version=backend.weight_version + 1)
        mixed = {n: t for n, t in ref.named_parameters()} | {"lm_head.weight": other.lm_head.weight}
        assert backend.weights_digest() == weights_digest(mixed.items())
        assert backend.weights_digest() != weights_digest(ref.named_parameters())
    finally:
        backend.load_weights([("lm_head.weight", ref.lm_head.weight)], version=backend.weight_version + 1)
    assert backend.weights_digest() == weights_digest(ref.named_parameters())


def test_vllm_refuses_a_prompt_longer_than_its_context_and_caps_the_rest(backend, tok):
    """A prompt at max_model_len is refused by check (the agent loop then fails that sample alone); one just below
    it runs, its continuation cut at the context's end instead of raising."""
    n = backend.max_model_len
    long = tok(" a", add_special_tokens=False)["input_ids"][:1] * n  # an ordinary token, repeated
    with pytest.raises(VideoRequestError, match="max_model_len"):
        backend.check(Request(long, [], SamplingParams(max_new_tokens=4)))
    near = long[: n - 3]
    backend.check(Request(near, [], SamplingParams(max_new_tokens=50)))
    g = backend.generate([Request(near, [], SamplingParams(max_new_tokens=50, seed=1))])[0]
    assert g.finish_reason == "length" and 1 <= len(g.token_ids) <= 3
