"""Numeric match, tool-use shaping and the weighted combination against hand-computed values."""
import random
from types import SimpleNamespace

import pytest

from engine.config import RewardConfig
from engine.reward import numeric_reward, parse_number, score, score_sample, tool_use_reward
from engine.rollout.batch import Sample, ToolEvent

GOOD = "<time>00:01-00:03</time> <caption>a red circle</caption> <think>it moves</think>\n<answer>{}</answer>"


@pytest.mark.parametrize("text, want", [("12", 12.0), ("-3.5 s", -3.5), ("about 1,234.5 px", 1234.5),
                                        ("1e3", 1000.0), ("none", None), (".5", 0.5)])
def test_parse_number(text, want):
    assert parse_number(text) == want


@pytest.mark.parametrize("answer, truth, tol, want", [
    ("7", 7, 0.0, 1.0), ("7.0 objects", "7", 0.0, 1.0), ("8", 7, 0.0, 0.0), ("7.3", 7, 0.05, 1.0),
    ("7.4", 7, 0.05, 0.0), ("seven", 7, 0.5, 0.0),
])
def test_numeric_reward(answer, truth, tol, want):
    assert numeric_reward(GOOD.format(answer), truth, rel_tol=tol) == want


def test_numeric_reward_without_answer_tag():
    assert numeric_reward("7", 7) == 0.0
    with pytest.raises(ValueError, match="no number"):
        numeric_reward(GOOD.format("7"), "many")


def test_tool_use_reward():
    assert tool_use_reward(0, 0) == 0.0 and tool_use_reward(3, 0) == 1.0 and tool_use_reward(1, 3) == 0.25
    with pytest.raises(ValueError):
        tool_use_reward(-1, 0)


def test_weighted_total_matches_the_terms():
    rng = random.Random(0)
    row = SimpleNamespace(id="q", kind="mcq", answer="B")
    for _ in range(50):
        wa, wf, wt = (rng.uniform(0, 2) for _ in range(3))
        ok, bad = rng.randint(0, 3), rng.randint(0, 3)
        letter = rng.choice("AB")
        r = score(GOOD.format(letter), row, wa, wf, tool_weight=wt, tool_calls=(ok, bad))
        acc = 1.0 if letter == "B" else 0.0
        tool = ok / (ok + bad) if ok + bad else 0.0
        assert (r.accuracy, r.format, r.tool) == (acc, 1.0, tool)
        assert r.total == pytest.approx(wa * acc + wf * 1.0 + wt * tool)


def test_agent_samples_are_format_scored_on_their_last_turn():
    row = SimpleNamespace(id="q", kind="mcq", answer="A")
    call = '<tool_call>{"name": "frame_zoom", "arguments": {}}</tool_call>'
    final = GOOD.format("A")
    s = Sample(0, "q", [1], [2], [0.0], response_text=call + final, final_text=final,
               tool_trace=[ToolEvent(0, "tool", "frame_zoom", {}, True, "ok"), ToolEvent(1, "error", None, "x", False, "e")])
    cfg = RewardConfig(tool_weight=1.0)
    agent = score_sample(s, row, cfg, agent=True)
    assert (agent.accuracy, agent.format, agent.tool) == (1.0, 1.0, 0.5)
    assert score_sample(s, row, cfg, agent=False).format == 0.0  # the whole text is not Video-Thinker format
