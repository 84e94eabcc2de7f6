"""The GRPO recipe (`vthink train`): one step reads top to bottom in `Trainer.run`.

    rows     = next(prompt stream)                       engine/orchestration/session.py PromptStream
    samples  = cluster.rollout(rows, G)                  rollout workers: generate, call tools, decode video
    rewards  = score_batch(samples)                      engine/reward: accuracy + format (+ tool use)
    advantages per group                                 engine/algo/advantages.py, set on the samples
    cluster.update(samples)                              learners build their own tensors, one optimizer step
    cluster.sync_weights()                               learner rank 0 broadcasts; workers load the weights
    log / trace / eval / checkpoint

`train(cfg)` around it checks the data, runs the optional SFT warm-up (engine/recipes/sft.py), starts the
cluster (engine/orchestration/cluster.py) and drives `Trainer.run`.

Asynchronous GRPO (trainer.max_staleness = s > 0; one_step_off is s = 1): a rollout thread keeps the rollouts of
the next s steps going while the learners train, each on the weights current when its calls reach the workers.
Its batch is then up to s weight versions old when its step trains; the PPO ratio uses the rollout's own
log-probs (the behaviour policy's: standard off-policy PPO clipping, not AReaL's decoupled objective), and a
batch older than s versions (a worker recovery syncs once more) is dropped and rolled out again. Weights reach
the workers between their calls: a sync waits for the call under way to finish on the old weights (the idle
handshake, orchestration/cluster.py), so the learners wait for it too.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from ray.exceptions import RayTaskError

from engine.algo.advantages import advantages_for
from engine.algo.dynamic_sampling import fill_informative
from engine.config import Config
from engine.data.sources import Data, prepare
from engine.errors import VthinkError
from engine.learner.checkpoint import STATE, latest
from engine.learner.errors import CheckpointError
from engine.model import policy_dir, policy_spec
from engine.orchestration.evaluation import evaluate_on
from engine.orchestration.interrupt import Interrupted, resume_command, stop_on_interrupt
from engine.orchestration.placement import parameter_count
from engine.orchestration.placement import resolve as resolve_placement
from engine.orchestration.session import PromptStream
from engine.orchestration.supervisor import Restarts, checkpoint_interval
from engine.recipes.sft import run_sft
from engine.reward import score_sample
from engine.rollout.batch import RolloutBatch
from engine.rollout.grouped import RolloutStats
from engine.rollout.backend import SamplingParams
from engine.rollout.seeds import derive_seed
from engine.telemetry.metrics import MetricsLog, keep_metrics_through, read_metrics
from engine.telemetry.phases import PhaseTimer
from engine.telemetry.report import plot_rewards, summary_table
from engine.telemetry.traces import TraceWriter, choose

Log = Callable[[str], None]
# Above this, rollout and learner log-probs of the same tokens on the same weights disagree for a reason
# other than float noise (fp32 on the tiny model stays below 1e-5, measured with `vthink demo`).
LOGP_GAP_WARN = 1e-2
TINY_PARAMS = 100_000_000  # below this a run is "tiny": trainer.trace_every "auto" traces every step


def held_out_line(result: dict) -> str:
    """One line of an eval.json: every question's score (its kind's accuracy reward), then each kind's."""
    kinds = " | ".join(f"{k} {v['accuracy']:.3f} (n={v['n']})" for k, v in sorted(result["per_kind"].items()))
    return (f"held-out: {result['overall']['questions']} questions | score {result['overall']['score']:.3f} | "
            f"{kinds} | format {result['format']:.3f}")


def score_batch(cfg: Config, samples: list, by_id: dict) -> list:
    """Each sample's Reward, scored against its row in `by_id`."""
    return [score_sample(x, by_id[x.row_id], cfg.reward, cfg.rollout.agent) for x in samples]


class Trainer:
    """Drives a Cluster step by step; its state (step, prompt stream, weight version) is checkpointed."""

    def __init__(self, cfg: Config, cluster, log: Log = print, data: Data | None = None):
        self.cfg, self.cluster, self.log = cfg, cluster, log
        data = data if data is not None else prepare(cfg, "train", cfg.trainer.output_dir, log)
        self.train_rows, self.eval_rows, self.records = data.train, data.eval, data.records
        self.failed: list[str] = []  # "row id: reason" of every prompt whose rollout failed
        self.last_eval: dict | None = None  # the held-out eval after the last step run() trained
        every = cfg.trainer.trace_every
        if every == "auto":  # every step for tiny models (the embedded one, and its SFT), every 10 otherwise
            every = 1 if parameter_count(policy_dir(cfg.model)) < TINY_PARAMS else 10
        self.trace_every = every
        # Traces turn the policy's patches back into frames: its patch grid, read from its config.json.
        self.tracer = TraceWriter(cfg.trainer.output_dir, policy_spec(cfg.model)) if self.trace_every else None
        self.stream = PromptStream(self.train_rows, cfg.trainer.prompts_per_step, cfg.trainer.seed)
        self.step = 0
        self.out = Path(cfg.trainer.output_dir)
        self.timer = PhaseTimer()
        t = cfg.trainer
        self.checkpoint_every = checkpoint_interval(t.steps, t.checkpoint_every, t.max_restarts)
        self.note: dict = {}  # goes into the next step's metrics line (a restart's)
        # Asynchronous GRPO: the rollout thread draws prompts for steps not trained yet. A checkpoint must resume
        # the stream where the first untrained step drew, so each rollout notes the stream's state before it draws.
        self._draw_lock = threading.Lock()
        self._stream_at: dict[int, dict] = {}  # step -> stream state before its rollout drew
        self._last_rollout_end: float | None = None
        self.stale_groups_dropped = 0

    # ------------------------------------------------------------------ one step

    def sampling(self, step: int, salt: int = 0) -> SamplingParams:
        r = self.cfg.rollout
        return SamplingParams(max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p,
                              seed=derive_seed(self.cfg.trainer.seed, step, 0, 0, salt))

    def rollout(self, step: int) -> tuple[RolloutBatch, list, dict]:
        """Scored samples for one step. With algo.dynamic_sampling, zero-variance groups are dropped and
        refilled from fresh prompts of the stream."""
        cfg, g = self.cfg, self.cfg.rollout.group_size
        t0 = time.perf_counter()
        with self._draw_lock:
            self._stream_at[step] = self.stream.state()
            rows = next(self.stream)
        # The rollout side's idle time: since its previous rollout ended (on-policy: the update and sync between).
        m: dict = {"failed_prompts": 0,
                   "time_rollout_idle_s": t0 - self._last_rollout_end if self._last_rollout_end else 0.0}
        stats, scored = [], {}

        def draw(k: int):
            batch_rows = rows[:k] if not stats else self.stream.take(k)  # a refill draws only what it needs
            batch, st = self.cluster.rollout(batch_rows, g, self.sampling(step, len(stats)))
            stats.append(st)
            m["failed_prompts"] += st.failed_prompts
            for e in st.errors:  # a video that fails mid-run fails its prompt, named, never silently
                self.log(f"step {step + 1}: prompt failed: {e}")
            self.failed.extend(st.errors)
            rewards = score_batch(cfg, batch.samples, {r.id: r for r in batch_rows})
            scored.update((x.seed, r) for x, r in zip(batch.samples, rewards))  # per-sample seeds are distinct
            return batch.samples, torch.tensor([r.total for r in rewards], dtype=torch.float32)

        if cfg.algo.dynamic_sampling:
            groups, fs = fill_informative(draw, g, len(rows), cfg.algo.dynamic_sampling_max_rounds)
            samples = [replace(x, group=k) for k, grp in enumerate(groups) for x in grp]
            m.update(groups_dropped=fs.groups_dropped, sampling_rounds=fs.rounds)
        else:
            samples, _ = draw(len(rows))
        n = max(1, len(samples))
        tokens = sum(x.generated_tokens for x in samples)
        total = RolloutStats.merged(stats)
        self._last_rollout_end = time.perf_counter()
        m.update(sampled_version=total.weight_version,
            time_rollout_s=time.perf_counter() - t0, tokens_per_s=tokens / max(time.perf_counter() - t0, 1e-9),
            response_len=tokens / n, truncated=sum(not x.finished for x in samples) / n,
            time_generate_s=total.loop.generate_s, time_tool_s=total.loop.tool_s, time_decode_s=total.decode_s,
            **total.phases,
            tool_calls=sum(x.tool_calls for x in samples) / n, relooks=sum(x.relooks for x in samples) / n,
            refused=total.loop.refused / n,  # samples the engine could not continue (e.g. past vLLM's max_model_len)
            tool_errors=sum(sum(x.counters.values()) for x in samples) / n,
            turns=sum(x.turns for x in samples) / n,
        )
        return RolloutBatch(samples, g), [scored[x.seed] for x in samples], m

    def learn(self, batch: RolloutBatch, rewards: list) -> dict:
        """Advantages, one learner update, and the weight broadcast that makes the rollout current."""
        m: dict = {}
        if not rewards:
            return m
        total = torch.tensor([r.total for r in rewards])
        batch.set_advantages(advantages_for(total, self.cfg.rollout.group_size, self.cfg.algo.advantage))
        with self.timer.phase("update"):
            learner = self.cluster.update(batch.samples)  # the learners build their tensors from the samples
        learner.pop("step", None)  # the learner's optimizer-step count; the trainer's step is the one logged
        for x, gap in zip(batch.samples, learner.pop("logp_gap_per_sample", [])):
            x.metrics["logp_gap_max"] = gap
        m.update(learner)
        with self.timer.phase("sync"):
            self.cluster.sync_weights()
        m.update(reward_mean=float(total.mean()), accuracy=sum(r.accuracy for r in rewards) / len(rewards),
                 format=sum(r.format for r in rewards) / len(rewards), weight_version=self.cluster.version)
        for name in sorted({k for r in rewards for k in r.user}):  # reward.fn's components, one metric each
            m[f"reward_fn/{name}"] = sum(r.user.get(name, 0.0) for r in rewards) / len(rewards)
        return m

    # ------------------------------------------------------------------ the loop

    def run(self, until: int, metrics_log: MetricsLog) -> list[dict]:
        """Train from self.step up to step `until` (exclusive); returns the new steps' metrics. Held-out evals run
        every trainer.eval_every steps and after the last step (kept as self.last_eval). A Ctrl-C ends the run
        after the step under way (Interrupted); a second one exits at once (orchestration/interrupt.py)."""
        cfg, history = self.cfg, []
        ahead = cfg.trainer.staleness
        pool = ThreadPoolExecutor(1) if ahead else None
        queued: deque = deque()  # the rollouts of the next `ahead` steps, oldest first (never past `until`)
        next_rollout = self.step

        def fill() -> None:
            nonlocal next_rollout
            while pool and len(queued) < ahead and next_rollout < until:
                queued.append(pool.submit(self.rollout, next_rollout))
                next_rollout += 1

        with stop_on_interrupt(self.log) as stop:
            try:
                while self.step < until:
                    step = self.step
                    # Rollout and rewards (asynchronous: this step's, rolled out while earlier steps trained).
                    t = time.perf_counter()
                    fill()
                    batch, rewards, m = queued.popleft().result() if pool else self.rollout(step)
                    staleness = self.staleness(m.pop("sampled_version"))
                    if ahead and staleness > ahead:  # older than allowed (a worker recovery synced once more)
                        self.stale_groups_dropped += len(batch.samples) // cfg.rollout.group_size
                        # Rolled out again on the rollout thread, after the steps queued behind it (one at a time).
                        batch, rewards, m = pool.submit(self.rollout, step).result()
                        staleness = self.staleness(m.pop("sampled_version"))
                    m.update(staleness=staleness, stale_groups_dropped=self.stale_groups_dropped,
                             time_learner_idle_s=time.perf_counter() - t)
                    fill()  # the next steps roll out on the current weights while this one trains
                    # Advantages, the learners' update, the weight sync.
                    # Steps count from 1 everywhere (console, metrics, traces, plot, checkpoints): a line reports
                    # the step that finished.
                    m = {"step": step + 1, **m, **self.learn(batch, rewards), **self.timer.pop()}
                    # Traces, held-out eval, checkpoint, the metrics line.
                    if self.tracer and (step % self.trace_every == 0 or step + 1 == until) and batch.samples:
                        self.trace(step + 1, "train", batch.samples, rewards, metrics_log)
                    self.step += 1
                    with self._draw_lock:
                        self._stream_at.pop(step, None)
                    if self.step == until or (cfg.trainer.eval_every and self.step % cfg.trainer.eval_every == 0):
                        # Held-out results go into the step's metrics line; the last one is the run's eval.json.
                        result = self.evaluate()
                        self.last_eval = result if self.step == until else None
                        m.update({f"eval_{k}": v for k, v in result.items() if isinstance(v, (int, float))})
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                        self.checkpoint()
                    m.update(self.note)
                    self.note = {}
                    metrics_log.write(m)
                    history.append(m)
                    self.log(metrics_log.progress_line(step, m))
                    gap = m.get("logp_gap_max", 0.0)
                    if gap > LOGP_GAP_WARN and not ahead:  # asynchronous: the samples came from older weights
                        self.log(f"WARNING: step {step + 1}: logp_gap_max {gap:.2e} > {LOGP_GAP_WARN:g}: the rollout "
                                 "and the learner disagree about the sampled tokens' log-probs on the same weights "
                                 "(positions, dtype, or sampling that is not plain softmax(logits / T))")
                    if stop.requested and self.step < until:  # Ctrl-C: this step is done and recorded; stop here
                        raise Interrupted(self.step)
            finally:
                if pool:
                    pool.shutdown(wait=False, cancel_futures=True)
        return history

    def staleness(self, sampled_version: int | None) -> int:
        """Weight versions between the ones a rollout's samples were drawn with and the learners' now."""
        return 0 if sampled_version is None else self.cluster.version - sampled_version

    def evaluate(self) -> dict:
        """Greedy answers to every held-out question with the current weights (engine/orchestration/evaluation.py);
        {} when the data has no held-out rows."""
        if not self.eval_rows:
            return {}
        result, batch = evaluate_on(self.cluster, self.cfg, self.eval_rows, self.records)
        if self.tracer and batch.samples:
            rewards = score_batch(self.cfg, batch.samples, {r.id: r for r in self.eval_rows})
            self.trace(self.step, "eval", batch.samples, rewards)
        return result

    def trace(self, step: int, split: str, samples: list, rewards: list, metrics_log: MetricsLog | None = None):
        """rollouts/step-<step>.jsonl (or eval-<step>.jsonl): trainer.trace_samples samples, best and worst first
        (every held-out answer, up to 8x that, for evals); a few also to TensorBoard / wandb."""
        budget = self.cfg.trainer.trace_samples * (8 if split == "eval" else 1)
        keep = choose([r.total for r in rewards], [x.group for x in samples], budget)
        rows = {r.id: r for r in (self.train_rows if split == "train" else self.eval_rows)}
        lines = self.tracer.lines(step, split, [samples[i] for i in keep], [rewards[i] for i in keep], rows)
        self.tracer.write(f"step-{step}" if split == "train" else f"eval-{step}", lines)
        if metrics_log is not None:
            metrics_log.traces(step, lines[:4], self.tracer.dir)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> str:
        with self._draw_lock:
            # Where the first untrained step drew (asynchronous: the rollout thread may have drawn further).
            stream = self._stream_at.get(self.step) or self.stream.state()
        extra = {"step": self.step, "stream": stream, "version": self.cluster.version}
        try:
            return self.cluster.save_checkpoint(str(self.out / "checkpoints"), extra)
        except CheckpointError as e:  # e.g. a full disk: say so in one line, with the way back
            raise CheckpointError(f"{e.cause if isinstance(e, RayTaskError) else e}; make room, then continue with: "
                                  f"{resume_command(str(self.out / 'config.json'))}") from None

    def resume(self, path: str | None) -> None:
        """Restore learners, prompt stream, step and weight version; the rollout gets the weights by sync. None:
        back to the start (a restart before the first checkpoint; the new learners hold the initial policy)."""
        self._stream_at.clear()
        if path is None:
            self.step = 0
            self.stream = PromptStream(self.train_rows, self.cfg.trainer.prompts_per_step, self.cfg.trainer.seed)
            return
        extra = self.cluster.load_checkpoint(path)
        self.step = int(extra["step"])
        self.stream = PromptStream(self.train_rows, self.cfg.trainer.prompts_per_step, self.cfg.trainer.seed,
                                   **extra["stream"])
        # Versions only increase on a sync group: re-sync under a number newer than any sent before.
        self.cluster.sync_weights(newer_than=int(extra["version"]))


def interrupted_at(checkpoint: Path | None) -> Interrupted:
    """A Ctrl-C that came while no cluster was up: the run's work is its newest checkpoint (or nothing)."""
    if checkpoint is None:
        return Interrupted(0, "")
    state = json.loads((checkpoint / STATE).read_text())
    return Interrupted(int(state["extra"]["step"]), str(checkpoint))


def resume_point(cfg: Config, sft_pending: bool) -> Path | None:
    """The newest GRPO checkpoint --resume continues from (None: the SFT warm-up has its own to resume); a
    ConfigError saying how checkpoints come to be when there is neither."""
    out = Path(cfg.trainer.output_dir)
    last = latest(out / "checkpoints")
    if last is None and not (sft_pending and latest(out / "sft" / "checkpoints")):
        from engine.errors import ConfigError

        t = cfg.trainer
        every = checkpoint_interval(t.steps, t.checkpoint_every, t.max_restarts)
        raise ConfigError("trainer.output_dir", f"--resume found no checkpoint under {out / 'checkpoints'}: "
                                                f"checkpoints are written every {every or 'no'} steps "
                                                f"(trainer.checkpoint_every={t.checkpoint_every}, trainer.max_restarts="
                                                f"{t.max_restarts}), at the end of a run, and when a run is "
                                                "interrupted with Ctrl-C")
    return last


def report(out: Path, data, failed: list[str], final_eval: dict | None, policy: str, log: Log) -> list[dict]:
    """A finished run's files and closing lines: data.json with the failed prompts, eval.json, the per-step
    table, the held-out line, the reward plot and where the final policy is. Returns the metrics history."""
    summary = {**data.summary(), "failed_prompts": len(failed), "failures": failed[:100]}
    (out / "data.json").write_text(json.dumps(summary, indent=2))
    if final_eval:
        (out / "eval.json").write_text(json.dumps(final_eval, indent=2))  # as `vthink eval` writes it
    history = read_metrics(out / "metrics.jsonl")
    log(summary_table(history))
    log(held_out_line(final_eval) if final_eval else "held-out: none (no data.val_files)")
    log(f"reward plot: {plot_rewards(history, out / 'reward.png')}")
    log(f"final policy (Hugging Face layout): {policy}")
    return history


def train(cfg: Config, log: Log = print, resume: bool = False) -> list[dict]:
    """The main job. Rows are checked first (bad rows: data.on_bad_row), then the optional SFT warm-up runs
    and the cluster starts. Metrics: <output_dir>/metrics.jsonl + tb/; checkpoints: <output_dir>/checkpoints/;
    data summary: <output_dir>/data.json (+ bad_rows.jsonl); the final policy's greedy held-out eval:
    <output_dir>/eval.json."""
    from engine.orchestration.cluster import Cluster
    from engine.orchestration.ray_start import stop_ray

    out = Path(cfg.trainer.output_dir)
    ckpt_root = out / "checkpoints"
    sft_pending = (cfg.sft.steps or cfg.sft.epochs) and not (out / "sft" / "config.json").is_file()
    last = resume_point(cfg, sft_pending) if resume else None
    sft_dir = out / "sft" if cfg.sft.steps or cfg.sft.epochs else None
    grpo_cfg = replace(cfg, model=replace(cfg.model, path=str(sft_dir))) if sft_dir else cfg  # starts from SFT's
    if cfg.trainer.staleness:  # the behaviour policy's log-probs: the learners' weights have moved on since
        grpo_cfg = replace(grpo_cfg, learner=replace(grpo_cfg.learner, old_logp="rollout"))
    cluster = None
    try:
        if not sft_pending:  # the GRPO actors start building now, while the rows are checked
            cluster = Cluster.launch(resolve_placement(grpo_cfg, log), log)
        data = prepare(cfg, "train", out, log)  # before anything trains
        out.mkdir(parents=True, exist_ok=True)
        (out / "data.json").write_text(json.dumps(data.summary(), indent=2))
        log(f"data: {len(data.train)} training rows, {len(data.eval)} held-out"
            + (f", {len(data.bad)} bad rows skipped" if data.bad else ""))
        if sft_pending:
            amount = f"{cfg.sft.steps} steps" if cfg.sft.steps else f"{cfg.sft.epochs} epochs"
            log(f"SFT warm-up first ({amount}, into {sft_dir}), then {cfg.trainer.steps} GRPO steps from it; "
                "sft.steps=0 sft.epochs=0 skips it")
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))  # what a Ctrl-C's --resume reads
            run_sft(cfg, data, sft_dir, log, resume=resume and latest(sft_dir / "checkpoints") is not None,
                    keep_ray=True, resume_with=resume_command(str(out / "config.json")))
            cluster = Cluster.launch(resolve_placement(grpo_cfg, log), log)
        cfg = cluster.cfg
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        log(f"starting Ray: {cfg.ray.rollout_workers} rollout workers, {cfg.ray.learners} FSDP learner ranks")
        videos = [r.video for r in data.train + data.eval]  # each rollout worker checks it can read a few
        cluster.start(data.records, videos)
        trainer = Trainer(cfg, cluster, log, data)
        if last is not None:
            trainer.resume(str(last))
            log(f"resumed from {last} at step {trainer.step}")
        metrics_log = MetricsLog(out, cfg.trainer.steps, append=last is not None,
                                 wandb_project=cfg.trainer.wandb_project)
        if last is not None:
            keep_metrics_through(metrics_log.path, trainer.step)
        if trainer.checkpoint_every != cfg.trainer.checkpoint_every:
            log(f"checkpoints every {trainer.checkpoint_every} steps, so that a restart (trainer.max_restarts="
                f"{cfg.trainer.max_restarts}) resumes near where it stopped; set trainer.checkpoint_every to choose")
        history, restarts, relaunch = [], Restarts(cfg.trainer.max_restarts, log), None
        while True:
            try:
                if relaunch is not None:  # after a failure: every actor anew, from the newest checkpoint
                    try:
                        cluster = Cluster.launch(cfg, log)
                        cluster.start(data.records, videos)  # an actor lost while starting is one more failure
                    except KeyboardInterrupt:  # Ctrl-C while the actors start again: the newest checkpoint is kept
                        raise interrupted_at(latest(ckpt_root)) from None
                    trainer.cluster = cluster
                    checkpoint = latest(ckpt_root)
                    trainer.resume(None if checkpoint is None else str(checkpoint))
                    keep_metrics_through(metrics_log.path, trainer.step)  # the steps redone are logged once
                    line = (f"restart {restarts.used}/{cfg.trainer.max_restarts} after {relaunch}; resumed from step "
                            f"{trainer.step}")
                    log(line)
                    trainer.note = {"restart": line, "restarts": restarts.used}
                    history = [m for m in history if m["step"] <= trainer.step]
                    relaunch = None
                history += trainer.run(cfg.trainer.steps, metrics_log)
                # Not one step had a sample to learn, because every prompt failed (dynamic sampling may also leave a
                # step with no group that teaches anything: that is not a failure).
                if history and all("reward_mean" not in m for m in history) and trainer.failed:
                    metrics_log.close()
                    raise VthinkError(f"no prompt could be rolled out in {len(history)} steps; first failures: "
                                      + "; ".join(trainer.failed[:5]))
                # The final eval and checkpoint are supervised too: a fault there redoes the steps since the last one.
                final_eval = trainer.last_eval if trainer.last_eval is not None else trainer.evaluate()
                path = trainer.checkpoint()
                break
            except Interrupted as e:
                if e.checkpoint is None:  # set when the interrupt came during a restart: nothing newer to save
                    e.checkpoint = trainer.checkpoint()
                metrics_log.close()
                log(f"interrupted at step {e.step}; checkpoint {e.checkpoint}; continue with: "
                    f"{resume_command(str(out / 'config.json'))}" if e.checkpoint else
                    "interrupted before the first checkpoint; nothing to resume from")
                raise
            except Exception as e:
                relaunch = restarts.take(e, cluster, latest(ckpt_root), resume_command(str(out / "config.json")))
                cluster = None
        metrics_log.close()
        return report(out, data, trainer.failed, final_eval, path, log)
    finally:
        if cluster is not None:
            cluster.shutdown()
        else:
            stop_ray()
