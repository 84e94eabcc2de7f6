"""SFT batches train at the rollout's positions: explicit M-RoPE ids by the original rule, never transformers' own."""
import pytest
import torch

from engine.learner.policy import sft_step
from engine.learner.batch import BatchIds, learner_batch
from engine.rollout.teacher import trace_samples
from tests.native.mrope_original import original_rope_config, original_rope_index


def test_sft_batches_carry_original_rule_position_ids(session):
    s = session
    rows = s.train_rows[:3]
    prompts = [s.rollout.prepare(r) for r in rows]
    T = learner_batch(trace_samples(rows, s.records, prompts, s.tokenizer, s.end_id),
                      BatchIds.of(s.tokenizer, s.model.config))
    want, _ = original_rope_index(T["input_ids"], None, T["video_grid_thw"], T["second_per_grid_ts"],
                                  T["attention_mask"], **original_rope_config(s.model.config))
    m = T["attention_mask"].bool()
    assert torch.equal(T["position_ids"][:, m], want[:, m])
    # Without explicit ids the learner path refuses rather than let transformers pick its own rule.
    T.pop("position_ids")
    opt = torch.optim.SGD(s.model.parameters(), lr=0.0)
    with pytest.raises(ValueError, match="position_ids"):
        sft_step(s.model, opt, T, grad_clip=1.0)
