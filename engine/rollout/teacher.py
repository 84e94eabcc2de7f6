"""Teacher-forced samples for SFT: Video-Thinker traces from ground truth, and synthesized agent trajectories.

Trajectories are replayed through the real agent loop (`TeacherBackend` "samples" the given assistant
turns; the real tools run and inject their observations), so an SFT sequence is token for token what
a rollout of the same turns would be: same turn markers, same frames, same positions. The samples go to
the learners, which build their tensors (engine/learner/batch.py) as they do for GRPO.
"""
from __future__ import annotations

import random
import re
from dataclasses import replace

from engine.data.schema import format_span
from engine.rollout.agent import AgentLoop, Episode
from engine.rollout.backend import Backend, Generation, Request, SamplingParams
from engine.rollout.batch import Sample
from engine.rollout.seeds import SeedTable


def scan_options(listed: list[tuple[str, str]], colour: str) -> str:
    """The options in order, each marked no until the one the caption names (yes), then stop: the answer is the
    last letter written. A small model learns this lookup (held-out 1.00 after 800 steps in a text-only probe) but
    not naming a shuffled option's letter outright ("option B": 0.3, chance 0.25, after 1000 steps)."""
    out = []
    for letter, option in listed:
        out.append(f"{letter}. {option} {'yes' if option == colour else 'no'}.")
        if option == colour:
            break
    return " ".join(out)


def has_target(row, records: dict) -> bool:
    """Whether the row has a trace to imitate: its own reasoning, or a video record with captioned segments."""
    return bool(row.reasoning) or bool(getattr(records.get(row.video_id), "segments", None))


def target_response(row, record=None, layout: str = "video_thinker") -> str:
    """What SFT teaches for a row, in reward.format_layout: its own reasoning trace (e.g. Video-Thinker-10K's)
    then the answer; else the trace a perfect model would write from the ground truth — one
    <time>/<caption>/<think> block per segment, or (layout "r1") the segments inside one <think>."""
    if row.reasoning:
        reasoning = row.reasoning.strip()
        if layout == "r1" and not reasoning.startswith("<think>"):
            reasoning = f"<think>{reasoning}</think>"
        return f"{reasoning}\n<answer>{row.answer}</answer>"
    if layout == "r1":
        seen = " ".join(f"{format_span(s.start_s, s.end_s)}: {s.caption}." for s in record.segments)
        return f"<think>{seen}</think>\n<answer>{row.answer}</answer>"
    blocks = [
        f"<time>{format_span(s.start_s, s.end_s)}</time> <caption>{s.caption}</caption> "
        "<think>This segment matters.</think>"
        for s in record.segments
    ]
    return "\n".join(blocks) + f"\n<answer>{row.answer}</answer>"  # a letter, or the span as MM:SS-MM:SS


def trace_samples(rows, records, prompts, tokenizer, end_id: int, layout: str = "video_thinker") -> list[Sample]:
    """Each prompt (GroupedRollout.prepare) followed by its row's target response and end-of-turn."""
    samples = []
    for i, (row, prompt) in enumerate(zip(rows, prompts)):
        text = target_response(row, records.get(row.video_id), layout)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [end_id]
        samples.append(Sample(i, row.id, prompt.prompt_ids, ids, [0.0] * len(ids), prompt.video))
    return samples


_SCAN = re.compile(r"<think>((?:[A-H]\. [^<]*? (?:yes|no)\.\s?)+)</think>")
_LETTER = re.compile(r"(<answer>|\boption )([A-H])\b")


def shuffle_options(row, turns: list[dict] | None, rng: random.Random) -> tuple:
    """`sft.shuffle_options`: the multiple-choice row with its options in a fresh order, and its trajectory with
    the letters its assistant turns (or the row's reasoning trace) write moved with them: the answer
    (`<answer>X</answer>`, "option X") and an option scan (`A. blue no. B. red yes.`, scan_options),
    rewritten in the new order. Which option is right, what the video shows and every tool turn stay as they were.
    Other rows come back unchanged. Why: a few hundred trajectories with one option order each teach a small model
    the letters of those questions, not to read the options back (the agent demo, #25)."""
    if row.kind != "mcq" or len(row.options) < 2:
        return row, turns
    order = list(range(len(row.options)))
    rng.shuffle(order)
    options = [row.options[i] for i in order]
    new_letter = {chr(65 + old): chr(65 + new) for new, old in enumerate(order)}
    right = row.options[ord(row.answer) - 65]

    def rewrite(text: str) -> str:
        text = _SCAN.sub(lambda m: f"<think>{_scan(options, right)}</think>", text)
        return _LETTER.sub(lambda m: m.group(1) + new_letter.get(m.group(2), m.group(2)), text)

    if turns is not None:
        turns = [{**t, "text": rewrite(t["text"])} if t["role"] == "assistant" and t.get("text") else t
                 for t in turns]
    reasoning = rewrite(row.reasoning) if row.reasoning else row.reasoning
    return replace(row, options=options, answer=new_letter[row.answer], reasoning=reasoning), turns


def _scan(options: list[str], right: str) -> str:
    return scan_options([(chr(65 + i), o) for i, o in enumerate(options)], right)


class TeacherBackend(Backend):
    """A backend that "samples" given text: `script[seed]` is the assistant turn for the call with that seed.

    A turn ends on the request's stop string when its text ends with one (a tool call), else with the
    end-of-turn token appended, as a model ending its answer would.
    """

    def __init__(self, tokenizer, end_id: int, script: dict[int, str]):
        self.tok, self.end_id, self.script = tokenizer, end_id, script
        self.weight_version = 0

    def check(self, request: Request) -> None:
        """A scripted turn needs no model: every request runs."""

    def generate(self, requests: list[Request]) -> list[Generation]:
        out = []
        for r in requests:
            text = self.script[r.params.seed]
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            stop = next((s for s in r.params.stop if text.endswith(s)), None)
            if stop is None:
                ids, stop = ids + [self.end_id], self.end_id
            out.append(Generation(ids, [0.0] * len(ids), "stop", stop))
        return out


def replay(rows, trajectories: list[list[dict]], rollout, tokenizer, end_id: int) -> tuple[list[Sample], int]:
    """`trajectories` (grounded turns, engine/synth) for `rows`, replayed through `rollout`'s agent loop and tools.
    Returns (the samples that replayed as scripted, how many diverged and were left out)."""
    seeds = SeedTable(0, len(rows), 1, rollout.loop_cfg.max_turns)
    script, episodes, wanted = {}, [], []
    for p, (row, turns) in enumerate(zip(rows, trajectories)):
        texts = [t["text"] for t in turns if t["role"] == "assistant"]
        script.update((seeds(p, 0, k), text) for k, text in enumerate(texts))
        prompt = rollout.prepare(row)
        episodes.append(Episode(p, 0, p, row.id, prompt.prompt_ids, prompt.videos, prompt.ctx, prompt.reminder))
        wanted.append(len(texts))
    loop = AgentLoop(TeacherBackend(tokenizer, end_id, script), tokenizer, rollout.loop_cfg,
                     spec=rollout.spec, registry=rollout.registry)
    samples, _ = loop.run(episodes, SamplingParams(max_new_tokens=10**6), seeds)
    # A replay that did not end as scripted (a tool failed, a budget ran out) is not a demonstration.
    kept = [s for s, n in zip(samples, wanted) if s.finish_reason == "stop" and s.turns == n and not s.counters]
    if not kept:
        raise ValueError("no trajectory replayed as scripted; check the rollout budgets (max_turns, tokens)")
    return kept, len(samples) - len(kept)
