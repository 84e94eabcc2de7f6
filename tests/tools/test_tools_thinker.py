"""Video-Thinker mode: segment/answer parsing agrees with the format reward, errors are reported not raised,
relook_span finds only a just-closed span, and both run in linear time on any string."""
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.reward.format import format_reward
from engine.tools import ThinkerSegment, ThinkerTrace, parse_thinker, relook_span

FUZZ = settings(max_examples=1500, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def clock(seconds: int) -> str:
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def test_well_formed_response():
    text = ("<time>00:01-00:03</time> <caption>a red circle appears</caption> <think>it is red</think>\n"
            "<time>01:05-01:10.5</time><caption> it moves left </caption><think>left</think>"
            "<answer> B </answer>")
    trace = parse_thinker(text)
    assert trace == ThinkerTrace([ThinkerSegment(1.0, 3.0, "a red circle appears", "it is red"),
                                  ThinkerSegment(65.0, 70.5, "it moves left", "left")], "B", [])


@pytest.mark.parametrize("text, fragment", [
    ("<time>00:01-00:03</time><think>x</think><answer>A</answer>", "segment 1 has no <caption>"),
    ("<time>00:01-00:03</time><caption>x</caption><answer>A</answer>", "segment 1 has no <think>"),
    ("<time>00:05-00:03</time><caption>x</caption><think>y</think><answer>A</answer>", "ends before it starts"),
    ("<time>soon</time><caption>x</caption><think>y</think><answer>A</answer>", "is not 'MM:SS-MM:SS'"),
    ("<time>" + "1" * 100 + "</time><answer>A</answer>", "time span of 100 characters"),
    ("<caption>x</caption><answer>A</answer>", "outside a segment"),
    ("<time>00:01-00:02</time><caption>x</caption><think>y<answer>A</answer>", "<think> at character"),
    ("<time>00:01-00:02</time><caption>x</caption><think>y</think>", "no <answer>"),
    ("<answer>A</answer><answer>B</answer>", "2 <answer> blocks"),
    ("</think><answer>A</answer>", "</think> at character 0 has no opening"),
    ("<answer>A", "<answer> at character 0 is never closed"),
    ("<time>00:01-00:02</time><caption>x</caption><caption>y</caption><think>z</think><answer>A</answer>",
     "more than one <caption>"),
    ("<time>00:01-00:02</time><think>z</think><caption>x</caption><answer>A</answer>", "<caption> comes after <think>"),
])
def test_off_format_is_reported(text, fragment):
    trace = parse_thinker(text)
    assert any(fragment in e for e in trace.errors), trace.errors


def test_bad_time_drops_only_that_segment_and_answer_is_the_last():
    text = ("<time>xx</time><caption>a</caption><think>b</think>"
            "<time>00:02-00:04</time><caption>c</caption><think>d</think><answer>A</answer><answer>C</answer>")
    trace = parse_thinker(text)
    assert trace.segments == [ThinkerSegment(2.0, 4.0, "c", "d")]
    assert trace.answer == "C"
    assert len(trace.errors) == 2  # the bad span, the second answer; the dropped segment's parts are not re-reported


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 300), st.text("abc xyz.,!", min_size=1, max_size=15),
                          st.text("abc xyz.,!", min_size=1, max_size=15)), min_size=1, max_size=5),
       st.text("ABCD0123:-", min_size=1, max_size=8), st.sampled_from(["", " ", "\n"]))
def test_agrees_with_the_format_reward_on_valid_responses(blocks, answer, sep):
    blocks = [(s, l, c, t) for s, l, c, t in blocks if c.strip() and t.strip()]
    if not blocks or not answer.strip():
        return
    text = sep.join(f"<time>{clock(s)}-{clock(s + l)}</time>{sep}<caption>{c}</caption>{sep}<think>{t}</think>"
                    for s, l, c, t in blocks) + f"{sep}<answer>{answer}</answer>"
    assert format_reward(text) == 1.0  # the independent reference: this is a valid Video-Thinker response
    trace = parse_thinker(text)
    assert trace.errors == []
    assert trace.answer == answer.strip()
    assert [(g.start_s, g.end_s, g.caption, g.think) for g in trace.segments] == \
        [(float(s), float(s + l), c.strip(), t.strip()) for s, l, c, t in blocks]


# ---------------------------------------------------------------------------------------------- relook

@pytest.mark.parametrize("text, span", [
    ("<time>00:03-00:05</time>", (3.0, 5.0)),
    ("The key moment: <time>01:02.5-01:04</time> \n", (62.5, 64.0)),
    ("<time>00:01-00:02</time><caption>x</caption><think>y</think> <time>00:07-00:09</time>", (7.0, 9.0)),
    ("<time>3-5</time>", (3.0, 5.0)),
    ("<time>00:05-00:03</time>", None),  # inverted
    ("<time>00:05-00:05</time>", None),  # empty: nothing to re-look at
    ("<time>00:03-00:05</time> and more", None),  # not just closed
    ("<time>00:03-00:05", None),  # not closed
    ("00:03-00:05</time>", None),  # no opening tag
    ("<time>later</time>", None),
    ("<time>" + " " * 10_000 + "00:01-00:02</time>", None),  # far too long to be a span
    ("", None),
])
def test_relook_span(text, span):
    assert relook_span(text) == span


def test_relook_span_non_string():
    assert relook_span(None) is None and relook_span(b"<time>00:01-00:02</time>") is None


# ----------------------------------------------------------------------------------------------- fuzzing

_FRAGMENTS = ("<time>", "</time>", "<caption>", "</caption>", "<think>", "</think>", "<answer>", "</answer>", "<", ">",
              "/", "00:03", "-", "00:05", "1", ":", ".", " ", "\n", "\ud800", "\x00", "é", "<tim", "e>", "x")


def check(text):
    trace = parse_thinker(text)
    assert isinstance(trace, ThinkerTrace)
    assert all(isinstance(e, str) for e in trace.errors)
    assert all(g.start_s <= g.end_s for g in trace.segments)
    span = relook_span(text)
    assert span is None or (isinstance(span, tuple) and span[0] < span[1])


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_arbitrary_unicode(text):
    check(text)


@FUZZ
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60).map("".join))
def test_fuzz_tag_fragments(text):
    check(text)


def test_fuzz_random_fragments():
    rng = random.Random(1)
    for _ in range(4000):
        check("".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(0, 40))))


MB = 1 << 20


@pytest.mark.parametrize("text", [
    "<time>" * (MB // 6),
    "</time>" * (MB // 7),
    "<time>" + " " * MB + "</time>",
    "<time>1" + " " * MB + "x</time>",  # would backtrack quadratically inside the span regex without the cap
    ("<time>00:01-00:02</time><caption>a</caption><think>b</think>" * (MB // 60)) + "<answer>A</answer>",
    "<answer>" + "a" * MB,
    "<" * MB,
    ("<time>00:01-00:02" + " " * 100) * (MB // 120) + "</time>",
    "\ud800" * MB + "<time>00:01-00:02</time>",
])
def test_one_megabyte_inputs_are_linear(text):
    t0 = time.perf_counter()
    check(text)
    assert time.perf_counter() - t0 < 5.0
