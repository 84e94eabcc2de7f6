"""`vthink synth`: VideoThinker's trajectory synthesis in caption space, grounded back to video.

For every training question a caption-space agent (engine/synth/caption_space.py) samples up to K
trajectories; the first whose answer is correct is kept (rejection sampling). Agent mode keeps its
tool calls (caption_zoom grounded to frame_zoom); thinker mode keeps only the final
<time>/<caption>/<think>/<answer> trace, the Video-Thinker SFT target. The result is a JSONL file
of trajectories that `engine.rollout.teacher.replay` replays through the real agent loop.
"""
from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.errors import ConfigError
from engine.rollout.prompt import AGENT_PROMPT, SYSTEM_PROMPT, question_text
from engine.rollout.seeds import derive_seed
from engine.synth.caption_space import CaptionAgent, CaptionSpace, ground


@dataclass
class SynthReport:
    questions: int = 0  # questions synthesis worked on (a cfg.synth.question_fraction of the training questions)
    training_questions: int = 0
    sampled: int = 0  # trajectories sampled in all
    kept: int = 0  # questions with a kept (correct) trajectory
    turns: Counter = field(default_factory=Counter)  # assistant turns per kept trajectory -> count
    tools: Counter = field(default_factory=Counter)  # tool calls in kept trajectories, by tool

    @property
    def kept_fraction(self) -> float:
        """Kept trajectories over sampled ones (each question stops sampling at its first correct one)."""
        return self.kept / max(1, self.sampled)

    def to_json(self) -> dict:
        n = max(1, self.kept)
        return {"questions": self.questions, "training_questions": self.training_questions, "sampled": self.sampled, "kept": self.kept,
                "kept_fraction": self.kept_fraction,
                "turns_per_trajectory": sum(k * v for k, v in self.turns.items()) / n,
                "tool_mix": dict(self.tools)}

    def line(self) -> str:
        j = self.to_json()
        mix = ", ".join(f"{k} {v}" for k, v in sorted(self.tools.items())) or "none"
        return (f"synth | {self.kept}/{self.questions} questions kept (of {self.training_questions} training) | kept fraction {j['kept_fraction']:.2f} of "
                f"{self.sampled} sampled | {j['turns_per_trajectory']:.2f} turns per trajectory | tools: {mix}")


def caption_agent(cfg) -> CaptionAgent:
    """The synthesis agent cfg.synth names: the seeded scripted planner of the task, or a chat model over HTTP."""
    s = cfg.synth
    if s.agent == "openai":
        from engine.synth.openai_agent import OpenAIChatAgent

        return OpenAIChatAgent(s.base_url, s.model, temperature=s.temperature)
    if cfg.data.task == "glimpse":
        from engine.synth.planner import RetrieveZoomPlanner

        return RetrieveZoomPlanner(cfg.data.min_duration_s or cfg.data.duration_s, temperature=s.temperature,
                                   zoom_frames=min(8, cfg.rollout.max_zoom_frames))
    from engine.data.flash import FLASH_COLOURS
    from engine.synth.planner import ScriptedPlanner

    return ScriptedPlanner(FLASH_COLOURS, cfg.data.duration_s, temperature=s.temperature)


def synth_rows(cfg, rows: list) -> list:
    """The training questions synthesis works on: a seeded cfg.synth.question_fraction of `rows` (at least one)."""
    n = max(1, math.floor(len(rows) * cfg.synth.question_fraction + 1e-9))
    if n >= len(rows):
        return list(rows)
    picked = sorted(random.Random(derive_seed(cfg.synth.seed, 0, 0, 1)).sample(range(len(rows)), n))
    return [rows[i] for i in picked]


def synthesize(cfg, rows: list, records: dict, out: Path, agent: CaptionAgent | None = None,
               log: Callable[[str], None] = print) -> tuple[dict[str, list[dict]], SynthReport]:
    """Grounded trajectories {row id: turns} for a cfg.synth.question_fraction of `rows` (synth_rows), also
    written to `out` (JSONL), and the report."""
    from engine.data import flash, glimpse

    fine_captions = {"flash": flash.fine_captions, "glimpse": glimpse.fine_captions}.get(cfg.data.task)
    if fine_captions is None:
        raise ConfigError("data.task", f"caption-space synthesis needs per-second captions, which the embedded "
                                       f"data has for the flash and glimpse tasks only; got {cfg.data.task!r}")
    training_questions, rows = len(rows), synth_rows(cfg, rows)
    agent = agent or caption_agent(cfg)
    thinker = not cfg.rollout.agent
    space = CaptionSpace(records, fine_captions, max_turns=cfg.rollout.max_turns if not thinker else 3)
    system = SYSTEM_PROMPT if thinker else AGENT_PROMPT
    report, kept = SynthReport(questions=len(rows), training_questions=training_questions), {}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            for k in range(cfg.synth.samples_per_question):
                traj = space.run(agent, row, system, question_text(row), seed=derive_seed(cfg.synth.seed, i, k, 0))
                report.sampled += 1
                if not traj.correct:
                    continue
                turns = ground(traj)
                if thinker:  # Video-Thinker: the caption-space reading becomes the model's own trace
                    turns = [turns[-1]]
                kept[row.id] = turns
                report.kept += 1
                report.turns[sum(1 for t in turns if t["role"] == "assistant")] += 1
                report.tools.update(t["name"] for t in turns if t["role"] == "tool" and t.get("name"))
                f.write(json.dumps({"row_id": row.id, "video_id": row.video_id, "mode": cfg.rollout.mode,
                                    "answer": traj.answer, "turns": turns,
                                    "caption_space": [t.to_json() for t in traj.turns]}, ensure_ascii=False) + "\n")
                break
    log(report.line())
    return kept, report
