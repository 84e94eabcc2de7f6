"""Accuracy for every problem type (against hand-computed values), the R1 format layout and the user reward hook."""
from pathlib import Path

import pytest

from engine.config import ConfigError, RewardConfig, load_config
from engine.data.schema import QARow
from engine.reward import (RewardFnError, accuracy_reward, format_reward, free_form_reward, load_reward_fn,
                           ocr_reward, regression_reward, score_sample)
from engine.rollout.batch import Sample


def row(kind, answer, options=()):
    return QARow(id=f"r-{kind}", video_id="v", video=Path("/v.mp4"), kind=kind, question="q?",
                 options=list(options), answer=answer, answer_span_s=None, split="eval")


def ans(text):
    return f"<think>...</think><answer>{text}</answer>"


def test_ocr_is_one_minus_word_error_rate():
    assert ocr_reward(ans("STOP here"), "STOP here") == 1.0
    assert ocr_reward(ans("STOP there"), "STOP here") == pytest.approx(0.5)  # 1 substitution / 2 words
    assert ocr_reward(ans("a b c d e f"), "x") == 0.0  # WER above 1 clips to 0
    assert ocr_reward("no answer block", "STOP") == 0.0


def test_free_form_is_rouge_l_f_measure():
    # LCS of 4 words over 5 and 5: P = R = 0.8.
    assert free_form_reward(ans("a red square moves left"), "a red circle moves left") == pytest.approx(0.8)
    # Stemming: "moving" and "moves" share the stem "move".
    assert free_form_reward(ans("circles moving"), "circle moves") == pytest.approx(1.0)
    assert free_form_reward(ans(""), "anything") == 0.0


def test_regression_is_one_minus_relative_error():
    assert regression_reward(ans("10"), "12.5") == pytest.approx(0.8)
    assert regression_reward(ans("40"), "12.5") == 0.0
    assert regression_reward(ans("0"), "0") == 1.0 and regression_reward(ans("0.1"), "0") == 0.0
    assert regression_reward(ans("about 1,250 m"), "1250") == 1.0


def test_numerical_tolerance_is_relative():
    r = row("numerical", "100")
    assert accuracy_reward(ans("100"), r) == 1.0
    assert accuracy_reward(ans("101"), r) == 0.0
    assert accuracy_reward(ans("101"), r, numeric_tolerance=0.02) == 1.0


@pytest.mark.parametrize("kind,answer,response,want", [
    ("mcq", "B", ans("B. two"), 1.0),
    ("mcq", "B", ans("C"), 0.0),
    ("grounding", "00:02-00:04", ans("00:03-00:05"), 1 / 3),
    ("numerical", "3", ans("3"), 1.0),
    ("ocr", "EXIT", ans("EXIT"), 1.0),
    ("free-form", "a cat", ans("a cat"), 1.0),
    ("regression", "4", ans("3"), 0.75),
])
def test_accuracy_dispatches_on_kind(kind, answer, response, want):
    r = row(kind, answer, ["one", "two", "three"] if kind == "mcq" else ())
    assert accuracy_reward(response, r) == pytest.approx(want)


def test_r1_format_layout():
    assert format_reward("<think>look</think>\n<answer>B</answer>", "r1") == 1.0
    assert format_reward("  <think></think><answer>B</answer>  ", "r1") == 1.0  # Video-R1 allows an empty think
    assert format_reward("<answer>B</answer>", "r1") == 0.0
    assert format_reward("<think>x</think><answer></answer>", "r1") == 0.0
    assert format_reward("<think>x</think><answer>B</answer> and more", "r1") == 0.0
    thinker = "<time>00:01-00:02</time> <caption>c</caption> <think>t</think><answer>B</answer>"
    assert format_reward(thinker, "r1") == 0.0 and format_reward(thinker) == 1.0
    with pytest.raises(ValueError, match="layout"):
        format_reward(thinker, "xml")


USER_MODULE = '''
def length_bonus(sample, row):
    return 0.5 if row.answer in sample.response_text else 0.0

def parts(sample, row):
    return {"brevity": 1.0 / (1 + len(sample.response_text)), "has_answer": float("<answer>" in sample.response_text)}

def broken(sample, row):
    return float("nan")

def one_arg(sample):
    return 1.0
'''


@pytest.fixture
def user_rewards(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    load_reward_fn.cache_clear()
    yield "my_rewards"
    load_reward_fn.cache_clear()


def sample(text):
    return Sample(group=0, row_id="r-mcq", prompt_ids=[1], response_ids=[2], response_logprobs=[0.0],
                  response_text=text, final_text=text)


def test_user_reward_fn_adds_to_the_total(user_rewards):
    r = row("mcq", "B", ["one", "two"])
    text = ans("B")
    base = score_sample(sample(text), r, RewardConfig(format_layout="r1"))
    got = score_sample(sample(text), r, RewardConfig(format_layout="r1", fn=f"{user_rewards}:length_bonus",
                                                     fn_weight=2.0))
    assert base.total == 2.0 and got.user == {"fn": 0.5} and got.total == pytest.approx(3.0)
    parts = score_sample(sample(text), r, RewardConfig(fn=f"{user_rewards}:parts"))
    assert parts.user == {"brevity": pytest.approx(1 / (1 + len(text))), "has_answer": 1.0}
    assert parts.total == pytest.approx(1.0 + 0.0 + sum(parts.user.values()))  # accuracy 1, not thinker format
    with pytest.raises(RewardFnError, match="r-mcq"):
        score_sample(sample(text), r, RewardConfig(fn=f"{user_rewards}:broken"))


def test_user_reward_fn_is_checked_at_config_time(user_rewards):
    assert load_config(None, [f"reward.fn={user_rewards}:parts"]).reward.fn == f"{user_rewards}:parts"
    for spec, match in [("no_such_module_xyz:f", "cannot import"), (f"{user_rewards}:missing", "no function"),
                        (f"{user_rewards}:one_arg", "two arguments"), ("no-colon", "package.module:function")]:
        with pytest.raises(ConfigError, match=match) as e:
            load_config(None, [f"reward.fn={spec}"])
        assert e.value.key == "reward.fn"


def test_r1_format_refuses_a_second_answer_and_other_modes():
    assert format_reward("<think>x</think><answer>A</answer><answer>B</answer>", "r1") == 0.0
    with pytest.raises(ConfigError, match="reward.format_layout"):
        load_config(None, ["reward.format_layout=r1", "rollout.mode=agent"])


USER_MODULE_2 = '''
def shadows(sample, row):
    return {"accuracy": 1.0}

def crashes(sample, row):
    return 1 / 0
'''


def test_user_reward_fn_cannot_shadow_built_in_terms_and_its_errors_name_the_row(tmp_path, monkeypatch):
    (tmp_path / "my_rewards2.py").write_text(USER_MODULE_2)
    monkeypatch.syspath_prepend(str(tmp_path))
    load_reward_fn.cache_clear()
    r = row("mcq", "B", ["one", "two"])
    with pytest.raises(RewardFnError, match="'accuracy'"):
        score_sample(sample(ans("B")), r, RewardConfig(fn="my_rewards2:shadows"))
    with pytest.raises(RewardFnError, match="raised on row r-mcq: ZeroDivisionError"):
        score_sample(sample(ans("B")), r, RewardConfig(fn="my_rewards2:crashes"))
    load_reward_fn.cache_clear()


def test_eval_summary_per_kind_and_without_multiple_choice():
    from engine.orchestration.evaluation import Scored, summarise

    mcq, num, ocr = row("mcq", "B", ["one", "two"]), row("numerical", "3"), row("ocr", "EXIT")
    mixed = summarise([Scored(mcq, 1.0, 1.0, 0), Scored(num, 0.0, 1.0, 1), Scored(ocr, 0.5, 0.0, 2)])
    assert (mixed["questions"], mixed["accuracy"], mixed["chance"]) == (1, 1.0, 0.5)  # over multiple choice
    assert mixed["per_kind"] == {"mcq": {"n": 1, "accuracy": 1.0}, "numerical": {"n": 1, "accuracy": 0.0},
                                 "ocr": {"n": 1, "accuracy": 0.5}}
    assert mixed["format"] == pytest.approx(2 / 3) and mixed["tool_calls_per_sample"] == 1.0
    # every question counts in the overall score, each by its kind's accuracy reward
    assert mixed["overall"] == {"questions": 3, "score": pytest.approx(1.5 / 3)}
    from engine.recipes.grpo import held_out_line

    line = held_out_line(mixed)
    assert line.startswith("held-out: 3 questions | score 0.500 |") and "numerical 0.000 (n=1)" in line
    open_ended = summarise([Scored(num, 0.0, 1.0, 0), Scored(ocr, 0.5, 0.0, 0)])
    assert (open_ended["questions"], open_ended["accuracy"], open_ended["chance"]) == (2, 0.25, None)


FILE_REWARD = '''
def by_source(sample, row):
    return {"from_mine": float(row.fields.get("data_source") == "mine")}
'''


def test_user_reward_fn_from_a_file_or_the_working_directory(tmp_path, monkeypatch):
    import sys
    from dataclasses import replace

    (tmp_path / "verl_style.py").write_text(FILE_REWARD)
    (tmp_path / "cwd_rewards.py").write_text(FILE_REWARD)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the working directory joins sys.path: undone after the test
    monkeypatch.chdir(tmp_path)
    load_reward_fn.cache_clear()
    r = replace(row("mcq", "B", ["one", "two"]), fields={"data_source": "mine", "problem_type": "multiple choice"})
    for spec in (f"{tmp_path / 'verl_style.py'}:by_source", "verl_style.py:by_source", "cwd_rewards:by_source"):
        got = score_sample(sample(ans("B")), r, RewardConfig(fn=spec))
        assert got.user == {"from_mine": 1.0}, spec
    with pytest.raises(ConfigError, match="is not a file") as e:
        load_reward_fn("missing_dir/nope.py:by_source")
    assert e.value.key == "reward.fn"
    load_reward_fn.cache_clear()
