"""The SFT recipe (`vthink sft`, and the warm-up before GRPO): the same Ray actors, micro-batching, checkpoints
and resume as GRPO. One step:

    rows    = next(prompt stream)
    samples = teacher-forced targets of the rows            engine/rollout/teacher.py (built while the last step ran)
    cluster.sft_update(samples)                             learners build their tensors, one optimizer step
    eval / checkpoint / the metrics line

Targets are each row's reasoning trace (Video-Thinker-10K style, or the ground-truth Video-Thinker trace of a
synthetic row), or, with `trajectories` (engine/synth), multi-turn agent trajectories replayed through the real
agent loop and tools. Samples are built in the driver, which needs the tokenizer and the model's config but no
weights. A run is sft.steps steps (or sft.epochs passes over the rows) of sft.batch_size rows at sft.lr, with
a greedy held-out eval every sft.eval_every steps (weights synced to the rollout workers first; without evals
no rollout worker is started) and a checkpoint every trainer.checkpoint_every steps under <out>/checkpoints.
Metrics go to <out>/metrics.jsonl; the result is a Hugging Face folder at <out>.
"""
from __future__ import annotations

import math
import random
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from engine.config import Config
from engine.errors import ConfigError
from engine.learner.checkpoint import latest
from engine.orchestration.evaluation import evaluate_on
from engine.orchestration.interrupt import Interrupted, stop_on_interrupt
from engine.orchestration.placement import resolve as resolve_placement
from engine.orchestration.session import PromptStream, build_rollout
from engine.orchestration.supervisor import Restarts, checkpoint_interval
from engine.rollout.teacher import has_target, replay, shuffle_options, trace_samples
from engine.telemetry.metrics import MetricsLog, keep_metrics_through

Log = Callable[[str], None]


def sft_config(cfg: Config) -> Config:
    """The learners' config for SFT: sft.lr with no warm-up, no reference model (no KL in SFT), and rollout
    workers only when there are evals to run."""
    workers = cfg.ray.rollout_workers if cfg.sft.eval_every else 0
    return replace(cfg, optim=replace(cfg.optim, lr=cfg.sft.lr, warmup_steps=0), algo=replace(cfg.algo, kl_coef=0.0),
                   ray=replace(cfg.ray, rollout_workers=workers))


def sft_steps(cfg: Config, n_rows: int) -> int:
    return cfg.sft.steps or cfg.sft.epochs * math.ceil(n_rows / cfg.sft.batch_size)


def sft_rows(cfg: Config, data, trajectories: dict | None, log: Log) -> list:
    """The training rows SFT learns from: those with a trajectory, or else those with a reasoning trace."""
    if trajectories is not None:
        return [r for r in data.train if r.id in trajectories]
    rows = [r for r in data.train if has_target(r, data.records)]
    if not rows:
        raise ConfigError("sft.steps", "no training row has a reasoning trace to learn from (a `reasoning` "
                                       "field, Video-R1's `process` or reasoning before the answer)")
    if len(rows) < len(data.train):
        log(f"sft: {len(rows)} of {len(data.train)} training rows have a reasoning trace; training on those")
    return rows


def teacher(cfg: Config, data, trajectories: dict | None, log: Log) -> Callable[[list, int], list]:
    """teach(rows, step): the rows' teacher-forced samples: their replayed trajectories, or their target traces
    (options shuffled with sft.shuffle_options; and sft.reader_examples text-only ones)."""
    from transformers import AutoConfig, AutoTokenizer

    from engine.model import policy_dir

    path = policy_dir(cfg.model)
    tokenizer, model_config = AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path)
    rollout = build_rollout(cfg, None, tokenizer, model_config, data.records)  # prompts and tools; no generation
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rehearse = None
    if cfg.sft.reader_examples:
        from engine.recipes.reader import Rehearsal

        rehearse = Rehearsal(tokenizer, cfg.sft.reader_examples, cfg.trainer.seed)
        log(f"sft: {cfg.sft.reader_examples} of the warm-up's text examples in every batch (sft.reader_examples)")

    def teach(batch_rows: list, step: int) -> list:
        turns = [trajectories[r.id] for r in batch_rows] if trajectories is not None else [None] * len(batch_rows)
        if cfg.sft.shuffle_options:
            rng = random.Random(cfg.trainer.seed * 100_003 + step)  # a resumed run draws the same orders
            batch_rows, turns = map(list, zip(*(shuffle_options(r, t, rng) for r, t in zip(batch_rows, turns))))
        if trajectories is not None:
            samples = replay(batch_rows, turns, rollout, tokenizer, end_id)[0]
        else:
            prompts = [rollout.prepare(r) for r in batch_rows]
            samples = trace_samples(batch_rows, data.records, prompts, tokenizer, end_id, cfg.reward.format_layout)
        return samples + rehearse() if rehearse else samples

    return teach


@dataclass
class SFTLoop:
    """SFT's steps on one cluster, from a checkpoint or the start: what a restart runs again on a new one."""

    cfg: Config
    data: object
    rows: list
    steps: int
    teach: Callable[[list, int], list]
    metrics_log: MetricsLog
    ckpt_root: Path
    every: int  # checkpoint interval (0: none)
    log: Log
    resume_with: str | None
    prefetch: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="sft-batch"))

    def run(self, cluster, last: Path | None, note: dict) -> None:
        """Steps from `last` (or the first) to the end; `note` goes into the first step's metrics line. A first
        Ctrl-C finishes the step under way, checkpoints it and raises Interrupted."""
        cfg, b = self.cfg, self.cfg.sft.batch_size
        start, stream = 0, PromptStream(self.rows, b, cfg.trainer.seed + 1)
        if last is not None:
            extra = cluster.load_checkpoint(str(last))
            start = int(extra["step"])
            stream = PromptStream(self.rows, b, cfg.trainer.seed + 1, **extra["stream"])
            self.log(f"sft: resumed from {last} at step {start}")
        keep_metrics_through(self.metrics_log.path, start)  # steps redone after a restart are logged once
        if note:
            note["restart"] += f"; resumed from step {start}"
            self.log(note["restart"])

        def draw(step: int) -> tuple[Future, dict]:
            """Step `step`'s batch, built (trajectory replay, frames, tokens) while the learners take the one
            before, and the stream's state once it is drawn (what a checkpoint after that step resumes from)."""
            picked = next(stream)
            return self.prefetch.submit(self.teach, picked, step), stream.state()

        upcoming = draw(start) if start < self.steps else None
        with stop_on_interrupt(self.log) as stop:
            for step in range(start, self.steps):
                (ready, drawn), upcoming = upcoming, (draw(step + 1) if step + 1 < self.steps else None)
                learner = cluster.sft_update(ready.result())
                learner.pop("step", None)  # the learner's optimizer-step count; this loop's step is the one logged
                done = step + 1
                m, note = {"step": done, **learner, **note}, {}  # 1-based, as GRPO's: the step that finished
                if cfg.sft.eval_every and (done % cfg.sft.eval_every == 0 or done == self.steps) and self.data.eval:
                    cluster.sync_weights()
                    result, _ = evaluate_on(cluster, cfg, self.data.eval, self.data.records)
                    m.update({f"eval_{k}": v for k, v in result.items() if isinstance(v, (int, float))})
                if self.every and done % self.every == 0:
                    cluster.save_checkpoint(str(self.ckpt_root), {"step": done, "stream": drawn})
                self.metrics_log.write(m)
                if step % 25 == 0 or done == self.steps or "eval_accuracy" in m:
                    self.log(f"sft {done}/{self.steps} | loss {m['loss']:.3f}"
                             + (f" | held-out accuracy {m['eval_accuracy']:.3f}" if "eval_accuracy" in m else ""))
                if stop.requested and done < self.steps:  # Ctrl-C: this step is done and recorded; keep it and stop
                    saved = cluster.save_checkpoint(str(self.ckpt_root), {"step": done, "stream": drawn})
                    self.metrics_log.close()
                    self.log(f"interrupted at step {done}; checkpoint {saved}"
                             + (f"; continue with: {self.resume_with}" if self.resume_with else ""))
                    raise Interrupted(done, saved)


def run_sft(cfg: Config, data, out: Path, log: Log = print, trajectories: dict[str, list[dict]] | None = None,
            resume: bool = False, keep_ray: bool = False, resume_with: str | None = None) -> Path:
    """Fine-tune model.path on `data` (engine/data/sources.py Data) and save the policy to `out`.
    `keep_ray`: leave Ray running for the phase that follows (GRPO), which starts its actors on it.
    A first Ctrl-C lets the step under way finish, checkpoints it and raises Interrupted; the line it logs names
    `resume_with`, the command that continues the run (orchestration/interrupt.py). An actor lost to an
    infrastructure fault starts every actor again from the newest SFT checkpoint (trainer.max_restarts)."""
    from engine.orchestration.cluster import Cluster

    out = Path(out)
    rows = sft_rows(cfg, data, trajectories, log)
    steps = sft_steps(cfg, len(rows))
    scfg = resolve_placement(sft_config(cfg), log)
    teach = teacher(cfg, data, trajectories, log)
    ckpt_root = out / "checkpoints"
    last = latest(ckpt_root) if resume else None
    if resume and last is None:
        raise ConfigError("trainer.output_dir", f"--resume found no SFT checkpoint under {ckpt_root}")
    log(f"sft: {steps} steps of {cfg.sft.batch_size} rows on {scfg.ray.learners} FSDP learner rank(s)")
    every = checkpoint_interval(steps, cfg.trainer.checkpoint_every, cfg.trainer.max_restarts)
    if every != cfg.trainer.checkpoint_every:
        log(f"sft: checkpoints every {every} steps, so that a restart (trainer.max_restarts="
            f"{cfg.trainer.max_restarts}) resumes near where it stopped; set trainer.checkpoint_every to choose")
    loop = SFTLoop(cfg, data, rows, steps, teach, MetricsLog(out, steps, append=last is not None), ckpt_root, every,
                   log, resume_with)
    partial = out / ".export"  # written aside, then renamed in: a crash never leaves a half-written policy
    cluster, restarts, note = None, Restarts(cfg.trainer.max_restarts, log, prefix="sft: "), {}
    try:
        while True:  # one pass per cluster: a fault worth a restart starts every actor again
            try:
                cluster = Cluster(scfg, log, records=data.records)
                loop.run(cluster, last, note)
                shutil.rmtree(partial, ignore_errors=True)
                cluster.export(str(partial))
                break
            except Interrupted:
                raise
            except Exception as e:
                last = latest(ckpt_root)
                died = restarts.take(e, cluster, last, resume_with)
                cluster = None
                note = {"restart": f"sft restart {restarts.used}/{cfg.trainer.max_restarts} after {died}",
                        "restarts": restarts.used}
        loop.metrics_log.close()
        for f in sorted(partial.iterdir(), key=lambda f: f.name == "config.json"):  # config.json, the mark, last
            f.replace(out / f.name)
        partial.rmdir()
    finally:
        loop.prefetch.shutdown(wait=False, cancel_futures=True)
        if cluster is not None:
            cluster.shutdown(keep_ray=keep_ray)
    log(f"saved the SFT policy to {out}")
    return out
