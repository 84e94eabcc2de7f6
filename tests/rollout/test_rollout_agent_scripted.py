"""The agent loop against a scripted policy: exact ids, masks, position ids and injected observations;
every bad-output case; every budget; re-look; overlapped vs serialised tools."""
import json

import pytest
import torch
from rollout_testlib import ScriptedBackend

from engine.errors import VideoRequestError
from engine.rollout.agent import LoopConfig
from engine.rollout.backend import SamplingParams
from engine.rollout.grouped import GroupedRollout
from engine.rollout.seeds import SeedTable
from engine.tools import Observation, ToolCall, default_registry, inline_video_token_ids, observation_token_ids
from engine.learner.batch import BatchIds, learner_batch
from tests.native.mrope_original import original_rope_config, original_rope_index

BASE = 11
ANSWER = "<time>00:01-00:03</time> <caption>a shape</caption> <think>it moves</think>\n<answer>A</answer><|im_end|>"


def call(name, **arguments):
    return "<think>check</think><tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def rollout(session, scripts, *, group_size=1, rows=None, **loop):
    """Run the agent loop with `scripts[p][s]` = list of turn texts for prompt p, sample s."""
    kw = dict(tools=True, max_turns=4, max_tokens_per_turn=200, max_total_tokens=1000, max_visual_tokens=10_000, tool_workers=2)
    kw.update(loop)
    cfg = LoopConfig(**kw)
    seeds = SeedTable(BASE, len(scripts), group_size, cfg.max_turns)
    script = {seeds(p, s, t): text for p, per in enumerate(scripts) for s, turns in enumerate(per)
              for t, text in enumerate(turns[: cfg.max_turns + 1])}
    tok = session.tokenizer
    mode = "agent" if cfg.tools else "thinker"
    r = GroupedRollout(ScriptedBackend(tok, script), tok, session.rollout.video, session.rollout.frame_policy,
                       cfg, default_registry() if cfg.tools else None, mode)
    rows = rows or session.train_rows[: len(scripts)]
    batch, stats = r.run(rows, group_size, SamplingParams(max_new_tokens=200, seed=BASE))
    return r, batch, stats


def enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_tool_round_trip_exact_ids_masks_positions(session):
    tok, spec = session.tokenizer, session.rollout.spec
    turn0 = call("frame_zoom", start=1, end=3)
    r, batch, _ = rollout(session, [[[turn0, ANSWER]]])
    (s,) = batch.samples
    row = session.train_rows[0]
    # The observation, rebuilt independently from the registry and the renderer.
    ctx = r.prepare(row).ctx
    obs = default_registry().execute(ToolCall("frame_zoom", {"start": 1, "end": 3}), ctx)
    assert obs.error is None and len(obs.clips) == 1
    obs_ids, obs_videos = observation_token_ids(obs, tok, spec)
    want = enc(tok, turn0) + obs_ids + enc(tok, ANSWER)
    assert s.response_ids == want
    assert s.response_mask == [1] * len(enc(tok, turn0)) + [0] * len(obs_ids) + [1] * len(enc(tok, ANSWER))
    # Log-probs sit on the model tokens only, turn by turn.
    n0 = len(enc(tok, turn0))
    assert s.response_logprobs[:n0] == pytest.approx([-0.5 - 0.001 * k for k in range(n0)])
    assert set(s.response_logprobs[n0 : n0 + len(obs_ids)]) == {0.0}
    # Videos: the prompt's, then the observation's (same frames as an independent execution).
    assert len(s.videos) == 2 and torch.equal(s.videos[1].pixel_values, obs_videos[0].pixel_values)
    assert s.videos[1].grid_thw == obs_videos[0].grid_thw
    assert s.finish_reason == "stop" and s.finished and s.turns == 2
    assert s.final_text == tok.decode(enc(tok, ANSWER), skip_special_tokens=True)
    (ev,) = s.tool_trace
    assert ev.name == "frame_zoom" and ev.ok and ev.arguments == {"start": 1, "end": 3} and ev.seconds > 0
    assert ev.visual_tokens == sum(1 for t in obs_ids if t == session.model.config.video_token_id)
    # The learner tensors: mask aligned, and M-RoPE ids equal the original Qwen2.5-VL rule.
    T = learner_batch(batch.samples, BatchIds.of(tok, session.model.config))
    p = len(s.prompt_ids)
    assert T["loss_mask"][0, p : p + len(want)].tolist() == s.response_mask
    ref, _ = original_rope_index(T["input_ids"], None, T["video_grid_thw"], T["second_per_grid_ts"],
                                 T["attention_mask"], **original_rope_config(session.model.config))
    m = T["attention_mask"].bool()
    assert torch.equal(T["position_ids"][:, m], ref[:, m])
    # The observation video's temporal positions follow its own timestamps (not the prompt's).
    assert T["video_grid_thw"].tolist()[1] == list(obs_videos[0].grid_thw)


BAD = {  # case -> (model output, counter category)
    "malformed_json": ("<tool_call>\n{\"name\": \"frame_zoom\", \"arguments\": {\"start\": 1,, }\n</tool_call>", "malformed_call"),
    "not_an_object": ("<tool_call>[1, 2]</tool_call>", "malformed_call"),
    "unknown_tool": (call("teleport", where="moon"), "unknown_tool"),
    "wrong_types": (call("frame_zoom", start=[1], end="later"), "bad_arguments"),
    "out_of_range": (call("frame_zoom", start=500, end=600), "bad_arguments"),  # past the end of the video
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_output_becomes_error_observation(session, case):
    tok = session.tokenizer
    text, category = BAD[case]
    _, batch, _ = rollout(session, [[[text, ANSWER]]])
    (s,) = batch.samples
    assert s.counters == {category: 1} and s.finish_reason == "stop" and s.turns == 2
    (ev,) = s.tool_trace
    assert not ev.ok and ev.error
    injected = tok.decode([t for t, m in zip(s.response_ids, s.response_mask) if m == 0])
    assert "<tool_response>" in injected and "Error" in injected  # the model is shown the error
    assert s.final_text.endswith("<answer>A</answer>")


def test_unclosed_tag_and_repeated_calls(session):
    tok = session.tokenizer
    unclosed = "<tool_call>\n{\"name\": \"frame_zoom\", \"arguments\": {\"start\": 1, \"end\": 2}}<|im_end|>"
    again = call("frame_zoom", start=1, end=2)
    _, batch, _ = rollout(session, [[[unclosed, again, again, ANSWER]]])
    (s,) = batch.samples
    assert s.counters == {"unclosed_tag": 1, "repeated_call": 1}
    assert [e.ok for e in s.tool_trace] == [False, True, False]
    # After the model's own <|im_end|> the engine does not close the turn a second time.
    end = tok.convert_tokens_to_ids("<|im_end|>")
    k = len(enc(tok, unclosed))
    assert s.response_ids[k - 1] == end and s.response_ids[k] != end and s.response_mask[k - 1 : k + 1] == [1, 0]
    assert s.finish_reason == "stop"


def test_endless_calls_hit_max_turns(session):
    turns = [call("frame_zoom", start=1 + k, end=2 + k) for k in range(4)]
    _, batch, _ = rollout(session, [[turns]], max_turns=2)
    (s,) = batch.samples
    assert s.finish_reason == "max_turns" and not s.finished and len(s.tool_trace) == 2 and s.turns == 3


@pytest.mark.parametrize("budget, expect", [
    ({"max_tokens_per_turn": 5}, "max_tokens_per_turn"),
    ({"max_total_tokens": "call+4"}, "max_total_tokens"),  # runs out inside the answer turn
    ({"max_visual_tokens": 3}, "max_visual_tokens"),
])
def test_budgets_finish_with_a_flag(session, budget, expect):
    turns = [call("frame_zoom", start=1, end=3), ANSWER]
    if budget.get("max_total_tokens") == "call+4":
        budget = {"max_total_tokens": len(enc(session.tokenizer, turns[0])) + 4}
    _, batch, _ = rollout(session, [[turns]], **budget)
    (s,) = batch.samples
    assert s.finish_reason == expect and not s.finished
    assert sum(s.response_mask) <= budget.get("max_total_tokens", 10_000)
    if expect == "max_total_tokens":
        assert sum(s.response_mask) == budget["max_total_tokens"] and s.turns == 2
    if expect == "max_tokens_per_turn":
        assert len(s.response_ids) == 5


def test_relook_injects_frames_inline(session):
    tok, spec = session.tokenizer, session.rollout.spec
    first = "<time>00:01-00:03</time>"
    rest = " <caption>a shape</caption> <think>it moves</think>\n<answer>A</answer><|im_end|>"
    r, batch, _ = rollout(session, [[[first, rest]]], tools=False, relook=True)
    (s,) = batch.samples
    from engine.tools import relook_observation

    obs = relook_observation(first, r.prepare(session.train_rows[0]).ctx)
    ids, videos = inline_video_token_ids(obs, tok, spec)
    assert s.response_ids == enc(tok, first) + ids + enc(tok, rest)
    assert s.response_mask == [1] * len(enc(tok, first)) + [0] * len(ids) + [1] * len(enc(tok, rest))
    assert s.turns == 1 and len(s.videos) == 2 and s.tool_trace[0].kind == "relook"
    assert s.response_text.startswith(first) and s.final_text == s.response_text
    from engine.reward import format_reward

    assert format_reward(s.response_text) == 1.0  # the model's own text stays in Video-Thinker format


def test_relook_bad_span_is_counted_and_generation_goes_on(session):
    first = "<time>00:09-00:03</time>"  # inverted span
    rest = " <caption>x</caption> <think>y</think><answer>A</answer><|im_end|>"
    _, batch, _ = rollout(session, [[[first, rest]]], tools=False, relook=True)
    (s,) = batch.samples
    assert s.counters == {"bad_relook": 1} and all(m == 1 for m in s.response_mask) and len(s.videos) == 1


def test_group_overlapped_equals_serialised(session):
    g = 3
    per = [[call("frame_zoom", start=1 + k, end=3 + k), ANSWER] for k in range(g)]
    scripts = [per, [[ANSWER]] * g]
    _, a, sa = rollout(session, scripts, group_size=g, tool_workers=2)
    _, b, sb = rollout(session, scripts, group_size=g, tool_workers=0)
    assert [x.response_ids for x in a.samples] == [x.response_ids for x in b.samples]
    assert [x.group for x in a.samples] == [0, 0, 0, 1, 1, 1]
    assert len({x.seed for x in a.samples}) == 2 * g  # distinct seeds within and across groups
    assert sa.loop.tool_calls == sb.loop.tool_calls == g


def test_seed_table_is_collision_free_and_stable():
    t = SeedTable(5, 64, 16, 7)
    seeds = t.all()
    assert len(seeds) == len(set(seeds)) == 64 * 16 * 8
    assert SeedTable(5, 64, 16, 7)(3, 4, 5) == t(3, 4, 5) != SeedTable(6, 64, 16, 7)(3, 4, 5)
    # A group's samples of one turn have consecutive seeds (one n = G request on vLLM), and a sample's
    # seed does not depend on the group size it was drawn with.
    assert [t(3, s, 5) for s in range(16)] == list(range(t(3, 0, 5), t(3, 0, 5) + 16))
    assert SeedTable(5, 64, 4, 7)(3, 2, 5) == t(3, 2, 5)
    with pytest.raises(IndexError):
        t(0, 16, 0)


def test_returning_samples_are_batched_not_run_one_by_one(session):
    """The loop generates once at least half of the live samples are back from their tools: samples whose tools
    return first wait for each other, and a straggler's tool does not hold them back."""
    import threading
    import time

    from engine.tools import Tool, ToolRegistry

    release = threading.Event()

    class Hold(Tool):  # sample 0 returns at once, 1 after 0.2 s, 2 and 3 when `release` is set
        name, description = "hold", "returns after a while that depends on k"
        parameters = {"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"]}

        def convert(self, arguments):
            return int(arguments["k"])

        def run(self, k, ctx):
            if k == 1:
                time.sleep(0.2)
            if k >= 2:
                release.wait(10)
            return Observation(text=f"held {k}")

    g = 4
    cfg = LoopConfig(tools=True, max_turns=2, max_tokens_per_turn=200, max_total_tokens=1000, tool_workers=4)
    seeds = SeedTable(BASE, 1, g, cfg.max_turns)
    script = {seeds(0, k, 0): call("hold", k=k) for k in range(g)} | {seeds(0, k, 1): ANSWER for k in range(g)}
    backend = ScriptedBackend(session.tokenizer, script)
    sizes = []
    generate = backend.generate

    def counted(requests):
        sizes.append(len(requests))
        if len(sizes) == 2:
            threading.Timer(0.3, release.set).start()  # the stragglers come back after the early pair answered
        return generate(requests)

    backend.generate = counted
    r = GroupedRollout(backend, session.tokenizer, session.rollout.video, session.rollout.frame_policy,
                       cfg, ToolRegistry([Hold()]), "agent")
    batch, stats = r.run(session.train_rows[:1], g, SamplingParams(max_new_tokens=200, seed=BASE))
    assert all(x.finish_reason == "stop" and x.tool_trace[0].ok for x in batch.samples)
    assert sizes[:2] == [4, 2]  # sample 0 waited for 1 (not a round of its own), and not for the stragglers
    assert sum(sizes) == 2 * g and stats.loop.wait_s > 0


def test_a_request_the_backend_refuses_fails_its_sample_not_the_batch(session):
    """The engine refuses the second turn of sample 1 (say, longer than vLLM's max_model_len): that sample ends
    as `refused`, with the reason in its trace; sample 0 runs to its answer; nothing raises."""
    scripts = [[[call("frame_zoom", start=1, end=3), ANSWER]] * 2]
    kw = dict(tools=True, max_turns=4, max_tokens_per_turn=200, max_total_tokens=1000, max_visual_tokens=10_000,
              tool_workers=0)
    cfg = LoopConfig(**kw)
    seeds = SeedTable(BASE, 1, 2, cfg.max_turns)
    script = {seeds(0, s, t): text for s, turns in enumerate(scripts[0]) for t, text in enumerate(turns)}
    refused_seed = seeds(0, 1, 1)

    class Refusing(ScriptedBackend):
        def check(self, request):
            if request.params.seed == refused_seed:
                raise VideoRequestError("the prompt holds 9000 tokens, the engine's max_model_len is 8192")

    tok = session.tokenizer
    r = GroupedRollout(Refusing(tok, script), tok, session.rollout.video, session.rollout.frame_policy, cfg,
                       default_registry(), "agent")
    batch, stats = r.run(session.train_rows[:1], 2, SamplingParams(max_new_tokens=200, seed=BASE))
    ok, refused = batch.samples
    assert ok.finish_reason == "stop" and ok.turns == 2
    assert refused.finish_reason == "refused" and refused.counters == {"refused_request": 1}
    assert refused.tool_trace[-1].kind == "refused" and "max_model_len" in refused.tool_trace[-1].error
    assert stats.loop.refused == 1


def test_frame_budget_refuses_a_look_past_it_with_an_error_naming_the_key(session):
    """rollout.max_frames_per_question: the prompt's frames count, a zoom that fits is served, the next one that
    would go over is an error observation naming the key, and the model can still answer."""
    prompt_frames = session.rollout.prepare(session.train_rows[0]).videos[0].grid_thw[0] * 2
    zoom = call("frame_zoom", start=1, end=3, num_frames=2)
    again = call("frame_zoom", start=2, end=4, num_frames=2)
    _, batch, _ = rollout(session, [[[zoom, again, ANSWER]]], max_frames=prompt_frames + 2)
    (s,) = batch.samples
    first, second = s.tool_trace
    assert first.ok and first.name == "frame_zoom"
    assert not second.ok and second.error == "frame_budget" and "rollout.max_frames_per_question" in second.result
    assert s.counters == {"frame_budget": 1} and s.finish_reason == "stop"
    assert sum(len(v.frame_times_s) or v.grid_thw[0] * 2 for v in s.videos) == prompt_frames + 2


def test_frame_zoom_is_clamped_to_rollout_max_zoom_frames(session):
    from engine.tools import FrameZoomTool

    r, _, _ = rollout(session, [[[ANSWER]]])  # an agent-mode engine: its prompts carry a tool context
    obs = FrameZoomTool(max_frames=4).run(FrameZoomTool().convert({"start": 0, "end": 6, "num_frames": 8}),
                                          r.prepare(session.train_rows[0]).ctx)
    assert obs.clips[0].num_frames == 4 and "rollout.max_zoom_frames" in obs.text
