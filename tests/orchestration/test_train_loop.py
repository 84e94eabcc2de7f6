"""The walking skeleton end to end: real synthetic videos, the tiny model, rollout, rewards, updates."""
import json

import pytest
import torch

from engine.config import load_config
from engine.orchestration.trainer import build_session, evaluate, train


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    return load_config(
        None,
        [
            f"data.dir={tmp / 'data'}", "data.num_videos=4", "data.duration_s=4",
            "video.fps=1", "video.min_frames=2", "video.max_frames=4", "video.max_pixels=12544",
            "rollout.group_size=2", "rollout.max_new_tokens=12",
            "trainer.steps=3", "trainer.prompts_per_step=2", f"trainer.output_dir={tmp / 'run'}",
            "sft.steps=2", "sft.batch_size=2", "optim.lr=1e-3", "optim.weight_decay=0",
        ],
    )


@pytest.fixture(scope="module")
def session(cfg):
    return build_session(cfg, log=lambda _: None)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_update_with_nonzero_advantages_changes_weights(cfg, session):
    from engine.learner.policy import Learner
    from engine.rollout.hf_backend import SamplingParams

    batch, stats = session.rollout.run(session.train_rows[:2], 2, SamplingParams(max_new_tokens=8, seed=3))
    assert stats.failed_prompts == 0 and len(batch.samples) == 4
    tensors = batch.tensors(session.tokenizer.pad_token_id, session.model.config.video_token_id)
    # Loss mask covers exactly the produced tokens, and the sequences are prompt + response.
    for i, s in enumerate(batch.samples):
        assert tensors["loss_mask"][i].sum() == len(s.response_ids)
        assert tensors["input_ids"][i, : len(s.prompt_ids) + len(s.response_ids)].tolist() == s.prompt_ids + s.response_ids
    learner = Learner(session.model, cfg.algo, cfg.optim, temperature=cfg.rollout.temperature)
    before = _snapshot(session.model)
    m = learner.update(tensors, torch.tensor([1.0, -1.0, 0.5, -0.5]))
    assert m["grad_norm"] > 0 and m["ratio_mean"] == pytest.approx(1.0)
    # The learner's log-probs of the sampled tokens agree with the rollout's (same weights, same temperature).
    assert m["rollout_logp_gap"] < 1e-3
    after = session.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "lm_head.weight" in changed and any("visual" in k for k in changed)


def test_train_runs_steps_and_writes_metrics(cfg, session):
    before = _snapshot(session.model)
    history = train(cfg, log=lambda _: None, session=session)
    assert [m["step"] for m in history] == [0, 1, 2]
    lines = (cfg.trainer.output_dir and open(f"{cfg.trainer.output_dir}/metrics.jsonl").read().splitlines())
    assert [json.loads(x)["step"] for x in lines] == [0, 1, 2]
    for m in history:
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["format"] <= 1.0
        assert m["response_len"] >= 1
    after = session.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the SFT warm-up at least moved them
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    final = f"{cfg.trainer.output_dir}/final"
    reloaded = Qwen2_5_VLForConditionalGeneration.from_pretrained(final)
    assert torch.equal(reloaded.lm_head.weight, session.model.lm_head.weight)
    assert AutoTokenizer.from_pretrained(final).convert_tokens_to_ids("<answer>") == session.tokenizer.convert_tokens_to_ids("<answer>")


def test_evaluate_scores_heldout(cfg, session):
    result = evaluate(cfg, log=lambda _: None, session=session)
    assert result["questions"] == len(session.eval_rows) > 0
    assert 0.0 <= result["accuracy"] <= 1.0
