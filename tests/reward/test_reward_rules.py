"""Reward rules: MCQ letters, temporal IoU, and Video-Thinker's format reward."""
import random

import pytest

from engine.reward import format_reward, grounding_reward, mcq_reward, temporal_iou
from engine.data.schema import format_mmss
from engine.reward.parse import parse_span

GOOD = "<time>00:01-00:03</time> <caption>a red circle</caption> <think>it moves</think>\n<answer>B</answer>"


@pytest.mark.parametrize(
    "text, reward",
    [
        (GOOD, 1.0),
        (GOOD + GOOD.split("\n")[0].replace("<answer>B</answer>", ""), 0.0),  # block after the answer
        ("<time>00:01-00:03</time><caption>x</caption><think>y</think><time>00:04-00:06</time><caption>z</caption><think>w</think><answer>A</answer>", 1.0),
        ("<answer>B</answer>", 0.0),  # no segment block
        ("<time>00:05-00:03</time> <caption>x</caption> <think>y</think> <answer>B</answer>", 0.0),  # inverted span
        ("<time>soon</time> <caption>x</caption> <think>y</think> <answer>B</answer>", 0.0),
        ("<time>00:01-00:03</time> <caption> </caption> <think>y</think> <answer>B</answer>", 0.0),  # empty caption
        ("<time>00:01-00:03</time> <caption>x</caption> <think>y</think> <answer>B</answer> trailing", 0.0),
        ("<time>00:01-00:03</time> <caption>x</caption> <think>y</think> <answer>B", 0.0),  # unclosed
        ("", 0.0),
    ],
)
def test_format_reward(text, reward):
    assert format_reward(text) == reward


@pytest.mark.parametrize("answer_text, ok", [("B", 1.0), ("(B)", 1.0), ("b", 1.0), ("B. a red circle", 1.0), ("C", 0.0), ("Blue", 0.0), ("", 0.0)])
def test_mcq_reward(answer_text, ok):
    assert mcq_reward(f"<think>x</think><answer>{answer_text}</answer>", "B") == ok


def test_mcq_takes_last_answer_and_needs_one():
    assert mcq_reward("<answer>A</answer> <answer>B</answer>", "B") == 1.0
    assert mcq_reward("B", "B") == 0.0


def _iou_reference(a, b):
    # Sampled measure of overlap on a fine grid, independent of the closed form.
    lo, hi = min(a[0], b[0]), max(a[1], b[1])
    n = 20000
    xs = [lo + (hi - lo) * (i + 0.5) / n for i in range(n)]
    inter = sum(a[0] <= x <= a[1] and b[0] <= x <= b[1] for x in xs)
    union = sum(a[0] <= x <= a[1] or b[0] <= x <= b[1] for x in xs)
    return inter / union


def test_temporal_iou_against_sampling():
    rng = random.Random(0)
    for _ in range(30):
        a = sorted(rng.uniform(0, 10) for _ in range(2))
        b = sorted(rng.uniform(0, 10) for _ in range(2))
        assert temporal_iou(tuple(a), tuple(b)) == pytest.approx(_iou_reference(a, b), abs=2e-3)
    assert temporal_iou((3, 1), (0, 5)) == 0.0


def test_grounding_reward_parses_clock_and_seconds():
    assert grounding_reward("<answer>00:02-00:04</answer>", (2.0, 4.0)) == pytest.approx(1.0)
    assert grounding_reward("<answer>2-6</answer>", (2.0, 4.0)) == pytest.approx(0.5)
    assert grounding_reward("<answer>later</answer>", (2.0, 4.0)) == 0.0


def test_clock_round_trip():
    for s in (0, 5, 59, 60, 61, 600, 3599):
        assert parse_span(f"{format_mmss(s)}-{format_mmss(s)}") == (s, s)


def test_parsers_are_linear_time():
    import time

    evil = "<time>" * 50_000 + "<caption>" * 50_000 + "0:" * 100_000
    t = time.perf_counter()
    format_reward(evil)
    mcq_reward(evil, "A")
    grounding_reward(evil, (0, 1))
    assert time.perf_counter() - t < 2.0
