"""Held-out evaluation and its ablations: blank frames, no tools (direct answers), confidence-gated tool use."""
import pytest
import torch
from rollout_testlib import ScriptedBackend

from engine.config import load_config
from engine.orchestration.evaluation import blanked, evaluate_rows, evaluate_session
from engine.orchestration.session import build_rollout
from engine.rollout.backend import SamplingParams
from engine.rollout.hf_backend import HFBackend
from engine.rollout.seeds import SeedTable

class Session:  # the fields evaluate_session reads, plus the model it puts in eval mode
    def __init__(self, eval_rows, rollout, records=None):
        self.eval_rows, self.rollout, self.model, self.records = eval_rows, rollout, rollout.backend.model, records


CALL = '<tool_call>\n{"name": "frame_zoom", "arguments": {"start": "00:01.0", "end": "00:03.0"}}\n</tool_call>'


def agent_cfg(rollout_cfg, *extra):
    return load_config(None, [f"data.dir={rollout_cfg.data.dir}", "rollout.mode=agent", "rollout.max_turns=1",
                              "rollout.max_new_tokens=48", "rollout.tool_workers=0", *extra])


def test_blank_video_blanks_prompt_and_tool_frames(session, rollout_cfg):
    s = session
    cfg = agent_cfg(rollout_cfg)
    rows = s.train_rows[:1]
    seeds = SeedTable(cfg.trainer.seed, 1, 1, 1)
    backend = ScriptedBackend(s.tokenizer, {seeds(0, 0, 0): CALL, seeds(0, 0, 1): "<answer>A</answer><|im_end|>"})
    rollout = build_rollout(cfg, backend, s.tokenizer, s.model.config, s.records)
    params = SamplingParams(max_new_tokens=48, temperature=0.0, seed=cfg.trainer.seed)
    seen, _ = rollout.run(rows, 1, params)
    blank, _ = blanked(rollout).run(rows, 1, params)
    (x,), (b,) = seen.samples, blank.samples
    assert len(x.videos) == len(b.videos) == 2  # the prompt's video and the frame_zoom observation
    for v, w in zip(x.videos, b.videos):
        assert v.grid_thw == w.grid_thw and v.second_per_grid_t == w.second_per_grid_t  # same timing, same shape
        assert v.pixel_values.abs().sum() > 0 and torch.count_nonzero(w.pixel_values) == 0
    assert rollout.prepare(rows[0]).videos[0].pixel_values.abs().sum() > 0  # the original engine is untouched


def test_tool_gate_answers_confident_questions_directly(session, rollout_cfg):
    s = session
    cfg = agent_cfg(rollout_cfg)
    rows = [r for r in s.eval_rows if r.kind == "mcq"][:3]
    rollout = build_rollout(cfg, HFBackend(s.model, s.tokenizer), s.tokenizer, s.model.config, s.records)
    everyone = evaluate_rows(cfg, rollout, rows, tool_gate=0.0)  # any confidence passes: no tool loop at all
    assert everyone["answered_directly"] == len(rows) and everyone["tool_calls_per_sample"] == 0.0
    assert everyone == evaluate_session(cfg, Session(rows, rollout), tools_off=True)  # the no-tools ablation
    nobody = evaluate_rows(cfg, rollout, rows, tool_gate=1.0 + 1e-9)  # none passes: every question uses the loop
    assert "answered_directly" not in nobody
    plain = evaluate_rows(cfg, rollout, rows)
    assert nobody["accuracy"] == plain["accuracy"] and nobody["format"] == pytest.approx(plain["format"])
