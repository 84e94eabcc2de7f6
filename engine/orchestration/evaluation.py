"""Held-out evaluation: greedy answers to every held-out question, scored per kind, with the demo's ablations.

One greedy sample per question (temperature 0). `evaluate_session` returns the dict `vthink eval`
writes to eval.json:

    {"questions", "accuracy", "chance", "format", "tool_calls_per_sample", "frames_per_question",
     "retrieval_calls_per_question", "zoom_hit_rate", "per_kind": {kind: {"n", "accuracy"}},
     "caption_names_answer" (multiple choice: the share whose final <caption> names the right option's text),
     "time_iou": {"mean", "r03", "r05"} (thinker mode, when the clips' targets are known)}

accuracy and chance are over the multiple-choice questions (over every question, chance null, when there
is none); per_kind reports every kind (grounding as mean temporal IoU). The ablations swap one part of the same policy: `blank_video` replaces every frame
the model sees (prompt and tool observations) by a blank one; `tools_off` makes the model answer
from the global frames alone: its turn is begun with `<time>`, the answer block, so no tool is called.
Two controls swap one tool: `dense_look` makes every frame_zoom look at the whole clip (what a look
over everything resolves under the frame budget), `shuffled_retrieval` makes clip_retrieval answer with
random clips (whether the policy uses what retrieval says).
`tool_gate` is VideoThinker's confidence-gated inference: that direct answer is kept when its confidence
exp(mean answer-token log-prob) reaches the gate, else the question goes through the tool loop
(`tools_off` is the gate at 0: every direct answer is kept).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from engine.reward import score, score_sample
from engine.reward.accuracy import temporal_iou
from engine.reward.parse import parse_span
from engine.rollout.backend import Request, SamplingParams
from engine.rollout.grouped import GroupedRollout
from engine.video.blank import BlankVideoService
from engine.tools.video_tools import FrameZoomTool

_TIME = re.compile(r"<time>([^<]*)</time>")
_CAPTION = re.compile(r"<caption>([^<]*)</caption>")


def blanked(rollout: GroupedRollout) -> GroupedRollout:
    """A rollout engine over the same backend whose every frame is blank (its own prompt cache)."""
    return GroupedRollout(rollout.backend, rollout.tokenizer, BlankVideoService(rollout.video), rollout.frame_policy,
                          rollout.loop_cfg, rollout.registry, rollout.mode,
                          relook_frames=rollout.loop.relook_frames, layout=rollout.layout)


def evaluate_rows(cfg, rollout: GroupedRollout, rows: list, tool_gate: float | None = None,
                  records: dict | None = None) -> dict:
    """Greedy answers to `rows` through `rollout`, scored; `tool_gate` enables confidence gating (agent mode);
    `records` (video id -> VideoRecord) add the target-grounded measures (zoom hits, time IoU)."""
    agent = cfg.rollout.agent
    by_id = {r.id: r for r in rows}
    direct: dict[str, tuple[str, float]] = {}
    if tool_gate is not None and agent:
        direct = {rid: (text, conf) for rid, (text, conf) in _direct_answers(cfg, rollout, rows).items()
                  if conf >= tool_gate}
    looped = [r for r in rows if r.id not in direct]
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=0.0, seed=cfg.trainer.seed)
    batch, stats = rollout.run(looped, 1, params) if looped else (None, None)
    frames = rollout.frame_policy.max_frames
    results: list[Scored] = []
    for rid, (text, _) in direct.items():
        row = by_id[rid]
        rew = score(text, row, format_text=text, numeric_tolerance=cfg.reward.numeric_tolerance,
                    layout=cfg.reward.format_layout)
        span = _target(records, row)
        results.append(Scored(row, rew.accuracy, rew.format, frames=frames,
                              time_iou=None if span is None else first_span_iou(text, span)))
    results += scored_samples(cfg, batch.samples if batch is not None else [], by_id, records)
    return summarise(results, stats, len(direct), thinker=not cfg.rollout.agent)


def evaluate_on(cluster, cfg, rows: list, records: dict | None = None) -> tuple[dict, object]:
    """(the eval.json dict, the rollout batch) of greedy answers to `rows` by a Cluster's rollout workers."""
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=0.0, top_p=cfg.rollout.top_p,
                            seed=cfg.trainer.seed)
    batch, stats = cluster.rollout(rows, 1, params)
    scored = scored_samples(cfg, batch.samples, {r.id: r for r in rows}, records)
    return summarise(scored, stats, thinker=not cfg.rollout.agent), batch


@dataclass
class Scored:
    """One answered question: its scores and how it looked at the video."""

    row: object
    accuracy: float
    format: float
    tool_calls: int = 0
    frames: int = 0  # frames the model was shown: the prompt's and every observation's
    retrievals: int = 0  # clip_retrieval calls
    zoom_hits: list[bool] = field(default_factory=list)  # per frame_zoom served: did its window overlap the target
    time_iou: float | None = None  # thinker mode: IoU of the answer's first <time> span with the target
    caption_names_answer: bool | None = None  # mcq: the final <caption> names the right option's text


def scored_samples(cfg, samples, by_id: dict, records: dict | None = None) -> list[Scored]:
    """The Scored of each sample; `records` give each clip's target span (zoom hits, time IoU)."""
    from engine.rollout.agent import num_frames

    agent = cfg.rollout.agent
    out = []
    for x in samples:
        row = by_id[x.row_id]
        rew = score_sample(x, row, cfg.reward, agent)
        span = _target(records, row)
        tools = [e for e in x.tool_trace if e.kind == "tool"]
        out.append(Scored(
            row, rew.accuracy, rew.format, tool_calls=x.tool_calls,
            frames=num_frames(x.videos or ([x.video] if x.video is not None else [])),
            retrievals=sum(1 for e in tools if e.name == "clip_retrieval"),
            zoom_hits=[] if span is None else [_overlaps(e.arguments, span) for e in tools
                                               if e.name == "frame_zoom" and e.ok],
            time_iou=None if span is None or agent else first_span_iou(x.final_text, span),
            caption_names_answer=names_answer(x.final_text, row)))
    return out


def names_answer(text: str, row) -> bool | None:
    """Whether the response's last <caption> names the right option's text, as whole words (None: not multiple
    choice). What the model saw, apart from whether it then wrote the right letter."""
    if row.kind != "mcq":
        return None
    captions = _CAPTION.findall(text or "")
    wanted = re.escape(row.options[row.answer_index].strip())
    return bool(captions) and re.search(rf"(?<!\w){wanted}(?!\w)", captions[-1], re.IGNORECASE) is not None


def _target(records: dict | None, row) -> tuple[float, float] | None:
    from engine.data.glimpse import target_span

    record = (records or {}).get(row.video_id)
    return None if record is None else target_span(record)


def _overlaps(arguments, span: tuple[float, float]) -> bool:
    from engine.tools import parse_time

    try:
        start, end = parse_time(arguments.get("start"), "start"), parse_time(arguments.get("end"), "end")
    except Exception:  # noqa: BLE001 — a served zoom has valid arguments; anything else is a miss
        return False
    return start < span[1] and end > span[0]


def first_span_iou(text: str, span: tuple[float, float]) -> float:
    """Temporal IoU of the first <time>a-b</time> the model wrote with `span`; 0 when it wrote none."""
    m = _TIME.search(text or "")
    got = parse_span(m.group(1)) if m else None
    return 0.0 if got is None else temporal_iou(got, span)


def summarise(results: list[Scored], stats=None, gated: int = 0, thinker: bool = False) -> dict:
    """The eval.json dict of scored results; `stats` (the rollout's RolloutStats) adds the questions that failed
    and why; `thinker` adds time_iou (grounding of the model's own <time> spans) when targets are known."""
    n = max(1, len(results))
    mcq = [x for x in results if x.row.kind == "mcq"]
    per_kind: dict[str, dict] = {}
    for x in results:
        k = per_kind.setdefault(x.row.kind, {"n": 0, "accuracy": 0.0})
        k["n"] += 1
        k["accuracy"] += x.accuracy
    for k in per_kind.values():
        k["accuracy"] /= k["n"]
    counted = mcq or results  # no multiple choice: every question counts
    zooms = [hit for x in results for hit in x.zoom_hits]
    out = {
        "questions": len(counted),
        "accuracy": sum(x.accuracy for x in counted) / max(1, len(counted)),
        "chance": sum(1 / len(x.row.options) for x in mcq) / len(mcq) if mcq else None,
        "format": sum(x.format for x in results) / n,
        "tool_calls_per_sample": sum(x.tool_calls for x in results) / n,
        "frames_per_question": sum(x.frames for x in results) / n,
        "retrieval_calls_per_question": sum(x.retrievals for x in results) / n,
        "zoom_hit_rate": sum(zooms) / len(zooms) if zooms else None,  # None: no zoom was served
        "per_kind": per_kind,
        # Every question, each scored by its accuracy reward: the letter for multiple choice, the match for
        # numerical, 1 - WER for OCR, ROUGE-L for free-form, 1 - relative error for regression, tIoU for grounding.
        "overall": {"questions": len(results), "score": sum(x.accuracy for x in results) / n},
    }
    named = [x.caption_names_answer for x in results if x.caption_names_answer is not None]
    if named:
        out["caption_names_answer"] = sum(named) / len(named)
    ious = [x.time_iou for x in results if x.time_iou is not None]
    if thinker and ious:
        out["time_iou"] = {"mean": sum(ious) / len(ious), "r03": sum(i >= 0.3 for i in ious) / len(ious),
                           "r05": sum(i >= 0.5 for i in ious) / len(ious)}
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


class WholeClipZoom(FrameZoomTool):
    """frame_zoom that looks at the whole clip whatever window it is asked for: the dense_look control."""

    def run(self, args, ctx):
        return super().run(replace(args, start_s=0.0, end_s=ctx.duration_s), ctx)


class ShuffledIndex:
    """A ClipIndex that answers every query with random clips of the video: the shuffled_retrieval control
    (seeded by the video and query, so a rerun sees the same answers)."""

    def __init__(self, index, seed: int = 0):
        self.index, self.seed = index, seed

    def rank(self, video: str, query: str, topk: int):
        import random
        import zlib

        clips = self.index.clips(video)
        rng = random.Random(zlib.crc32(f"{self.seed}|{video}|{query}".encode()))
        picked = rng.sample(clips, min(topk, len(clips)))
        return [replace(h, score=float(len(picked) - i)) for i, h in enumerate(picked)]


def with_tools(rollout: GroupedRollout, *, dense_look: bool = False, shuffled_retrieval: bool = False) -> GroupedRollout:
    """The same rollout engine with frame_zoom and/or clip_retrieval swapped for their control versions."""
    from engine.tools import ClipRetrievalTool, ToolRegistry

    tools = []
    for name in rollout.registry.names():
        tool = rollout.registry.get(name)
        if dense_look and name == "frame_zoom":
            tool = WholeClipZoom(tool.max_frames)
        elif shuffled_retrieval and name == "clip_retrieval":
            tool = ClipRetrievalTool(ShuffledIndex(tool.index), tool.show_text, tool.default_topk, tool.max_topk)
        tools.append(tool)
    return GroupedRollout(rollout.backend, rollout.tokenizer, rollout.video, rollout.frame_policy, rollout.loop_cfg,
                          ToolRegistry(tools), rollout.mode, relook_frames=rollout.loop.relook_frames,
                          layout=rollout.layout)


def evaluate_session(cfg, session, *, blank_video: bool = False, tools_off: bool = False,
                     tool_gate: float | None = None, dense_look: bool = False, shuffled_retrieval: bool = False) -> dict:
    """The eval.json dict for the session's policy on its held-out rows (see the module docstring)."""
    session.model.eval()
    rollout = blanked(session.rollout) if blank_video else session.rollout
    if dense_look or shuffled_retrieval:
        rollout = with_tools(rollout, dense_look=dense_look, shuffled_retrieval=shuffled_retrieval)
    return evaluate_rows(cfg, rollout, session.eval_rows, 0.0 if tools_off else tool_gate, records=session.records)

