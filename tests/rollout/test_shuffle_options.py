"""sft.shuffle_options: a trajectory's option order is redrawn each time it is used, and its letters move with it."""
import random
from collections import Counter
from pathlib import Path

import pytest

from engine.config import load_config
from engine.data.schema import QARow
from engine.rollout.teacher import shuffle_options

COLOURS = ["red", "dark green", "blue", "yellow", "white"]
CALL = '<tool_call>\n{"name": "clip_retrieval", "arguments": {"query": "colored box", "topk": 3}}\n</tool_call>'


def _row(options, answer, reasoning=None, kind="mcq"):
    return QARow("r0", "v0", Path("v0.mp4"), kind, "What color is the box?", options,
                 answer, None if kind == "mcq" else (1.0, 3.0), "train", reasoning)


def _expected_scan(options, right):
    """The scan written out by hand: each option in order, 'no' until the right one's 'yes', then stop."""
    parts = []
    for i, option in enumerate(options):
        parts.append(f"{'ABCDEFGH'[i]}. {option} {'yes' if option == right else 'no'}.")
        if option == right:
            break
    return " ".join(parts)


def _trajectory(options, right):
    letter = "ABCDEFGH"[options.index(right)]
    final = (f"<time>00:50-00:52</time> <caption>a {right} box</caption> "
             f"<think>{_expected_scan(options, right)}</think> <answer>{letter}</answer>")
    return [{"role": "assistant", "text": CALL},
            {"role": "tool", "name": "clip_retrieval", "text": '1. {"start": "00:50.0", "end": "00:52.0"}'},
            {"role": "tool", "name": "frame_zoom", "text": None},
            {"role": "assistant", "text": final}]


@pytest.mark.parametrize("n_options", [2, 4, 5])
def test_the_right_option_keeps_its_text_and_the_letters_follow_it(n_options):
    rng = random.Random(n_options)
    letters = Counter()
    for trial in range(200):
        options = rng.sample(COLOURS, n_options)
        right = rng.choice(options)
        row = _row(options, "ABCDEFGH"[options.index(right)])
        turns = _trajectory(options, right)
        new_row, new_turns = shuffle_options(row, turns, random.Random(trial))
        assert sorted(new_row.options) == sorted(options)
        assert new_row.options[ord(new_row.answer) - 65] == right
        final = new_turns[-1]["text"]
        assert f"<think>{_expected_scan(new_row.options, right)}</think>" in final
        assert final.endswith(f"<answer>{new_row.answer}</answer>")
        assert final.startswith(f"<time>00:50-00:52</time> <caption>a {right} box</caption> ")
        assert new_turns[:3] == turns[:3]  # the call and the tool turns are untouched
        assert row.options == options and turns == _trajectory(options, right)  # the inputs are not mutated
        letters[new_row.answer] += 1
    # Every letter is drawn, roughly evenly: one order per trajectory is what taught letters instead of reading.
    assert set(letters) == set("ABCDEFGH"[:n_options])
    assert min(letters.values()) > 200 / n_options / 2


def test_option_mentions_and_reasoning_traces_move_too():
    options = ["red", "blue", "yellow", "white"]
    row = _row(options, "B", reasoning="<think>The flash is blue, option B.</think>")
    turns = [{"role": "assistant", "text": "<think>The flash is blue, option B.</think> <answer>B</answer>"}]
    for seed in range(20):
        new_row, new_turns = shuffle_options(row, turns, random.Random(seed))
        letter = new_row.answer
        assert new_row.options[ord(letter) - 65] == "blue"
        assert new_row.reasoning == f"<think>The flash is blue, option {letter}.</think>"
        assert new_turns[0]["text"] == f"<think>The flash is blue, option {letter}.</think> <answer>{letter}</answer>"


def test_rows_that_are_not_multiple_choice_come_back_unchanged():
    row = _row([], "00:01-00:03", kind="grounding")
    turns = [{"role": "assistant", "text": "<answer>00:01-00:03</answer>"}]
    assert shuffle_options(row, turns, random.Random(0)) == (row, turns)


def test_the_key_is_off_by_default_and_on_in_the_agent_demo():
    assert load_config(None, []).sft.shuffle_options is False
    root = Path(__file__).resolve().parents[2]
    assert load_config(str(root / "configs/tiny_agent_cpu.yaml"), []).sft.shuffle_options is True
