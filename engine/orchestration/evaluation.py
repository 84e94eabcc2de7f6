"""Held-out evaluation: greedy answers to every held-out question, scored per kind, with the demo's ablations.

One greedy sample per question (temperature 0). `evaluate_session` returns the dict `vthink eval`
writes to eval.json:

    {"questions", "accuracy", "chance", "format", "tool_calls_per_sample", "per_kind": {kind: {"n", "accuracy"}}}

accuracy and chance are over the multiple-choice questions (over every question, chance null, when there
is none); per_kind reports every kind (grounding as mean temporal IoU). The ablations swap one part of the same policy: `blank_video` replaces every frame
the model sees (prompt and tool observations) by a blank one; `tools_off` makes the model answer
from the global frames alone: its turn is begun with `<time>`, the answer block, so no tool is called.
`tool_gate` is VideoThinker's confidence-gated inference: that direct answer is kept when its confidence
exp(mean answer-token log-prob) reaches the gate, else the question goes through the tool loop
(`tools_off` is the gate at 0: every direct answer is kept).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from engine.reward import score, score_sample
from engine.rollout.backend import Request, SamplingParams
from engine.rollout.grouped import GroupedRollout


class BlankVideoService:
    """A VideoService whose clips keep their timing and shape but carry blank pixels (all zeros after
    normalisation, the mean colour): the blank-video ablation."""

    def __init__(self, service):
        self._service = service

    def sample(self, *args, **kwargs):
        return _blank(self._service.sample(*args, **kwargs))

    def window(self, *args, **kwargs):
        return _blank(self._service.window(*args, **kwargs))

    def crop(self, *args, **kwargs):
        return _blank(self._service.crop(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self._service, name)


def _blank(clip):
    # Another key: caches keyed on the decode identity must not hand back the real clip's embeddings.
    return replace(clip, frames=torch.zeros_like(clip.frames), pixel_values=torch.zeros_like(clip.pixel_values),
                   key=None if clip.key is None else (*clip.key, "blank"))


def blanked(rollout: GroupedRollout) -> GroupedRollout:
    """A rollout engine over the same backend whose every frame is blank (its own prompt cache)."""
    return GroupedRollout(rollout.backend, rollout.tokenizer, BlankVideoService(rollout.video), rollout.frame_policy,
                          rollout.loop_cfg, rollout.registry, rollout.mode, rollout.mrope,
                          relook_frames=rollout.loop.relook_frames, layout=rollout.layout)


def evaluate_rows(cfg, rollout: GroupedRollout, rows: list, tool_gate: float | None = None) -> dict:
    """Greedy answers to `rows` through `rollout`, scored; `tool_gate` enables confidence gating (agent mode)."""
    agent = cfg.rollout.mode == "agent"
    by_id = {r.id: r for r in rows}
    direct: dict[str, tuple[str, float]] = {}
    if tool_gate is not None and agent:
        direct = {rid: (text, conf) for rid, (text, conf) in _direct_answers(cfg, rollout, rows).items()
                  if conf >= tool_gate}
    looped = [r for r in rows if r.id not in direct]
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=0.0, seed=cfg.trainer.seed)
    batch, stats = rollout.run(looped, 1, params) if looped else (None, None)
    results: list[tuple[object, float, float, int]] = []  # row, accuracy, format, tool calls
    for rid, (text, _) in direct.items():
        row = by_id[rid]
        rew = score(text, row, format_text=text, numeric_tolerance=cfg.reward.numeric_tolerance,
                    layout=cfg.reward.format_layout)
        results.append((row, rew.accuracy, rew.format, 0))
    results += scored_samples(cfg, batch.samples if batch is not None else [], by_id)
    return summarise(results, stats, len(direct))


def evaluate_on(cluster, cfg, rows: list) -> tuple[dict, object]:
    """(the eval.json dict, the rollout batch) of greedy answers to `rows` by a Cluster's rollout workers."""
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=0.0, top_p=cfg.rollout.top_p,
                            seed=cfg.trainer.seed)
    batch, stats = cluster.rollout(rows, 1, params)
    return summarise(scored_samples(cfg, batch.samples, {r.id: r for r in rows}), stats), batch


def scored_samples(cfg, samples, by_id: dict) -> list[tuple]:
    """(row, accuracy, format, tool calls) of each sample."""
    agent = cfg.rollout.mode == "agent"
    out = []
    for x in samples:
        row = by_id[x.row_id]
        rew = score_sample(x, row, cfg.reward, agent)
        out.append((row, rew.accuracy, rew.format, sum(1 for e in x.tool_trace if e.kind in ("tool", "error"))))
    return out


def summarise(results: list[tuple], stats=None, gated: int = 0) -> dict:
    """The eval.json dict of scored (row, accuracy, format, tool calls) results; `stats` (the rollout's
    RolloutStats) adds the questions that failed and why."""
    n = max(1, len(results))
    mcq = [(row, acc) for row, acc, _, _ in results if row.kind == "mcq"]
    per_kind: dict[str, dict] = {}
    for row, acc, _, _ in results:
        k = per_kind.setdefault(row.kind, {"n": 0, "accuracy": 0.0})
        k["n"] += 1
        k["accuracy"] += acc
    for k in per_kind.values():
        k["accuracy"] /= k["n"]
    counted = mcq or [(row, acc) for row, acc, _, _ in results]  # no multiple choice: every question counts
    out = {
        "questions": len(counted),
        "accuracy": sum(acc for _, acc in counted) / max(1, len(counted)),
        "chance": sum(1 / len(row.options) for row, _ in mcq) / len(mcq) if mcq else None,
        "format": sum(fmt for _, _, fmt, _ in results) / n,
        "tool_calls_per_sample": sum(c for *_, c in results) / n,
        "per_kind": per_kind,
    }
    if stats is not None and stats.failed_prompts:
        out["failed_questions"] = stats.failed_prompts
        out["failures"] = stats.errors  # "row id: reason" of each question whose video could not be read
    if gated:
        out["answered_directly"] = gated
    return out


def _direct_answers(cfg, rollout: GroupedRollout, rows: list) -> dict[str, tuple[str, float]]:
    """Each row's direct answer (the assistant turn begun with <time>, so no tool call) and its confidence."""
    tok = rollout.tokenizer
    prefix = tok("<time>", add_special_tokens=False)["input_ids"]
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    answer_open, answer_close = tok.convert_tokens_to_ids("<answer>"), tok.convert_tokens_to_ids("</answer>")
    requests = []
    for r in rows:
        p = rollout.prepare(r)
        params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=0.0, stop_token_ids=(end_id,))
        requests.append(Request(p.prompt_ids + prefix, p.videos, params))
    out = {}
    for r, g in zip(rows, rollout.backend.generate(requests)):
        ids, lps = g.token_ids, g.logprobs
        inside = [lp for k, lp in enumerate(lps) if answer_open in ids[:k] and answer_close not in ids[:k]
                  and ids[k] != answer_close]
        conf = math.exp(sum(inside) / len(inside)) if inside else 0.0
        out[r.id] = ("<time>" + tok.decode(ids, skip_special_tokens=True), conf)
    return out


def evaluate_session(cfg, session, *, blank_video: bool = False, tools_off: bool = False,
                     tool_gate: float | None = None) -> dict:
    """The eval.json dict for the session's policy on its held-out rows (see the module docstring)."""
    session.model.eval()
    rollout = blanked(session.rollout) if blank_video else session.rollout
    return evaluate_rows(cfg, rollout, session.eval_rows, 0.0 if tools_off else tool_gate)

