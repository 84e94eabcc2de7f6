"""End to end on the tiny model and real synthetic clips: agent mode through the config, and a real
model turn generated after a real tool observation, checked against the learner's log-probs."""
import json

import torch
from rollout_testlib import ScriptedBackend

from engine.config import load_config
from engine.learner.policy import token_logprobs
from engine.orchestration.session import build_rollout
from engine.rollout.agent import LoopConfig
from engine.rollout.backend import SamplingParams
from engine.rollout.grouped import GroupedRollout
from engine.rollout.hf_backend import HFBackend
from engine.rollout.seeds import SeedTable
from engine.tools import default_registry
from engine.learner.batch import BatchIds, learner_batch
from tests.native.mrope_original import original_rope_config, original_rope_index


def test_agent_mode_from_config_runs_on_the_tiny_model(session, rollout_cfg):
    cfg = load_config(None, [f"data.dir={rollout_cfg.data.dir}", "rollout.mode=agent", "rollout.max_turns=2",
                             "rollout.max_new_tokens=16", "rollout.tool_workers=2"])
    s = session
    r = build_rollout(cfg, HFBackend(s.model, s.tokenizer), s.tokenizer, s.model.config, s.records)
    prompt = r.prepare(s.train_rows[0])
    text = s.tokenizer.decode(prompt.prompt_ids)
    assert "<tools>" in text and '"frame_zoom"' in text  # Hermes tool schemas in the system turn
    batch, stats = r.run(s.train_rows[:2], 2, SamplingParams(max_new_tokens=16, seed=5))
    assert stats.failed_prompts == 0 and len(batch.samples) == 4
    for x in batch.samples:
        assert x.finish_reason in ("stop", "max_tokens_per_turn", "max_total_tokens", "max_turns", "max_visual_tokens")
        assert len(x.response_ids) == len(x.response_mask) == len(x.response_logprobs)
    T = learner_batch(batch.samples, BatchIds.of(s.tokenizer, s.model.config))
    assert T["loss_mask"].sum() == sum(x.generated_tokens for x in batch.samples)


def test_real_turn_after_real_observation_matches_learner_logprobs(session):
    s, g = session, 2
    loop = LoopConfig(tools=True, max_turns=2, max_tokens_per_turn=40, max_total_tokens=200, tool_workers=2)
    seeds = SeedTable(3, 1, g, loop.max_turns)
    first = '<tool_call>\n{"name": "frame_zoom", "arguments": {"start": 1, "end": 4}}\n</tool_call>'
    hf = HFBackend(s.model, s.tokenizer)
    backend = ScriptedBackend(s.tokenizer, {seeds(0, k, 0): first for k in range(g)}, fallback=hf)
    r = GroupedRollout(backend, s.tokenizer, s.rollout.video, s.rollout.frame_policy, loop,
                       default_registry(), "agent")
    batch, _ = r.run(s.train_rows[:1], g, SamplingParams(max_new_tokens=40, temperature=0.8, seed=3))
    for x in batch.samples:
        assert x.tool_trace[0].ok and len(x.videos) == 2 and x.turns == 2
    assert batch.samples[0].response_ids != batch.samples[1].response_ids  # distinct seeds, distinct samples
    T = learner_batch(batch.samples, BatchIds.of(s.tokenizer, s.model.config))
    with torch.no_grad():
        ref = token_logprobs(s.model, T, temperature=0.8)
    # The real model's tokens: after the observation (the scripted call's log-probs are fake).
    real = torch.zeros_like(T["loss_mask"], dtype=torch.bool)
    for i, x in enumerate(batch.samples):
        p = len(x.prompt_ids)
        obs_end = max(k for k, m in enumerate(x.response_mask) if m == 0) + 1
        real[i, p + obs_end : p + len(x.response_ids)] = True
    assert real.sum() > 0
    assert torch.allclose(ref[real], T["rollout_logp"][real], atol=1e-4)
    # The batch's M-RoPE ids are the original Qwen2.5-VL rule's, also after the mid-context video.
    want, _ = original_rope_index(T["input_ids"], None, T["video_grid_thw"], T["second_per_grid_ts"],
                                  T["attention_mask"], **original_rope_config(s.model.config))
    m = T["attention_mask"].bool()
    assert torch.equal(T["position_ids"][:, m], want[:, m])
    assert json.dumps([e.arguments for x in batch.samples for e in x.tool_trace])


def test_trainer_step_in_agent_mode_with_dynamic_sampling(session, rollout_cfg, tmp_path):
    """The trainer's rollout phase (dynamic sampling refills) on an in-process rollout instead of Ray workers."""
    from engine.recipes.grpo import Trainer

    cfg = load_config(None, [
        f"data.dir={rollout_cfg.data.dir}", "video.fps=1", "video.min_frames=2", "video.max_frames=4",
        "video.max_pixels=12544", "rollout.mode=agent", "rollout.group_size=2", "rollout.max_new_tokens=8",
        "rollout.max_turns=1", "algo.dynamic_sampling=true", "algo.dynamic_sampling_max_rounds=2",
        "algo.kl_coef=0", "reward.tool_weight=0.5", "trainer.steps=1", "trainer.prompts_per_step=2",
        f"trainer.output_dir={tmp_path / 'run'}"])
    s = session
    r = build_rollout(cfg, HFBackend(s.model, s.tokenizer), s.tokenizer, s.model.config, s.records)

    class InProcess:  # the Cluster methods the rollout phase uses
        def rollout(self, rows, group_size, params):
            return r.run(rows, group_size, params)

    batch, rewards, m = Trainer(cfg, InProcess(), log=lambda _: None).rollout(step=0)
    assert m["sampling_rounds"] in (1, 2) and m["groups_dropped"] >= 0
    assert "time_generate_s" in m and m["failed_prompts"] == 0
    assert len(batch.samples) == len(rewards) and len(batch.samples) % 2 == 0
    assert [x.group for x in batch.samples] == [k // 2 for k in range(len(batch.samples))]
