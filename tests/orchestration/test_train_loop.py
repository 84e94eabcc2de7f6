"""The main job end to end through the CLI's entry point: SFT warm-up, Ray GRPO steps, checkpoint, resume."""
import pytest
import torch

from engine.config import load_config
from engine.learner.policy import token_logprobs
from engine.orchestration.session import PromptStream, build_session
from engine.orchestration.evaluation import evaluate_session
from engine.recipes.grpo import train
from engine.rollout.hf_backend import SamplingParams
from engine.telemetry.metrics import read_metrics
from engine.learner.batch import BatchIds, learner_batch


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    # a verl-style reward in a .py file; weight 0, so its components are logged without changing the run
    (tmp / "lengths.py").write_text("def size(sample, row):\n    return {'chars': len(sample.response_text) / 100}\n")
    return load_config(None, [f"reward.fn={tmp / 'lengths.py'}:size", "reward.fn_weight=0",
        f"data.dir={tmp / 'data'}", "data.num_videos=4", "data.duration_s=4",
        "video.fps=1", "video.min_frames=2", "video.max_frames=4", "video.max_pixels=12544",
        "rollout.group_size=2", "rollout.max_new_tokens=12",
        "trainer.steps=2", "trainer.prompts_per_step=2", f"trainer.output_dir={tmp / 'run'}",
        "sft.steps=2", "sft.batch_size=2", "optim.lr=1e-3",
    ])


@pytest.fixture(scope="module")
def session(cfg):
    return build_session(cfg, log=lambda _: None)


def test_rollout_batch_is_token_in_token_out(session):
    batch, stats = session.rollout.run(session.train_rows[:2], 2, SamplingParams(max_new_tokens=8, seed=3))
    assert stats.failed_prompts == 0 and len(batch.samples) == 4
    tensors = learner_batch(batch.samples, BatchIds.of(session.tokenizer, session.model.config))
    for i, s in enumerate(batch.samples):
        assert tensors["loss_mask"][i].sum() == len(s.response_ids)
        ids = s.prompt_ids + s.response_ids
        assert tensors["input_ids"][i, : len(ids)].tolist() == ids
    # The learner's log-probs of the sampled tokens are the rollout's (same weights, same temperature).
    logp = token_logprobs(session.model, tensors)
    mask = tensors["loss_mask"]
    assert ((logp - tensors["rollout_logp"]).abs() * mask).sum() / mask.sum() < 1e-4


def test_prompt_stream_resumes_where_it_stopped(session):
    a = PromptStream(session.train_rows, 2, seed=5)
    seen = [[r.id for r in next(a)] for _ in range(7)]
    b = PromptStream(session.train_rows, 2, seed=5)
    for _ in range(3):
        next(b)
    c = PromptStream(session.train_rows, 2, seed=5, **b.state())
    assert [[r.id for r in next(c)] for _ in range(4)] == seen[3:]


def test_prompt_stream_take_draws_exactly_what_is_asked_and_skips_nothing():
    rows = list(range(7))
    s = PromptStream(rows, 3, seed=1)
    first = next(s)
    taken = s.take(2) + s.take(2)  # refills: exactly the rest of this epoch, nothing skipped
    assert len(taken) == 4 and sorted(first + taken[:4]) == rows
    again = PromptStream(rows, 3, seed=1, **s.state())
    assert again.take(3) == s.take(3)  # resumable mid-epoch


def test_train_then_resume(cfg):
    out = cfg.trainer.output_dir
    logs = []
    history = train(cfg, log=logs.append)
    assert (f"SFT warm-up first (2 steps, into {out}/sft), then 2 GRPO steps from it; sft.steps=0 sft.epochs=0 "
            "skips it") in logs  # not silently
    assert [m["step"] for m in history] == [1, 2]
    assert [m["step"] for m in read_metrics(f"{out}/metrics.jsonl")] == [1, 2]
    assert all(m["reward_fn/chars"] > 0 for m in read_metrics(f"{out}/metrics.jsonl"))  # reward.fn's components
    with open(f"{out}/reward.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    from transformers import Qwen2_5_VLForConditionalGeneration

    final = Qwen2_5_VLForConditionalGeneration.from_pretrained(f"{out}/checkpoints/step-00000002")
    sft = Qwen2_5_VLForConditionalGeneration.from_pretrained(f"{out}/sft")
    assert not torch.equal(final.lm_head.weight, sft.lm_head.weight)  # GRPO moved the SFT weights

    from dataclasses import replace

    more = replace(cfg, trainer=replace(cfg.trainer, steps=3))
    resumed = train(more, log=lambda _: None, resume=True)
    assert [m["step"] for m in resumed] == [1, 2, 3]
    assert resumed[:2] == history


def test_evaluate_scores_heldout(cfg, session):
    result = evaluate_session(cfg, session)
    mcq = [r for r in session.eval_rows if r.kind == "mcq"]
    assert result["questions"] == len(mcq) > 0
    assert sum(k["n"] for k in result["per_kind"].values()) == len(session.eval_rows)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["chance"] == pytest.approx(0.25)
    assert set(result) >= {"questions", "accuracy", "chance", "format", "tool_calls_per_sample", "per_kind"}
