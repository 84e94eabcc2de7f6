"""The GRPO training loop (single process for now): rollout -> rewards -> group advantages -> update.

The walking skeleton of the architecture: each phase lives in its own package (rollout/, reward/,
algo/, learner/) so later work can make it distributed without changing the loop's shape.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from engine.algo.advantages import advantages_for
from engine.algo.dynamic_sampling import fill_informative
from engine.config import Config, DataConfig
from engine.data.dataset import load_rows, load_videos
from engine.data.synthetic import make_dataset
from engine.learner.policy import Learner, sft_step
from engine.learner.sft import sft_batch
from engine.model import load_policy
from engine.native import mrope_config
from engine.reward import score_sample
from engine.rollout.agent import LoopConfig
from engine.rollout.batch import RolloutBatch
from engine.rollout.grouped import GroupedRollout
from engine.rollout.hf_backend import HFBackend, SamplingParams
from engine.telemetry.metrics import MetricsLog
from engine.telemetry.report import plot_rewards, summary_table
from engine.video import FramePolicy, VideoService

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def ensure_dataset(cfg: DataConfig, log: Callable[[str], None] = print) -> Path:
    """The dataset directory, rendered from cfg's seed first when it does not exist yet."""
    root = Path(cfg.dir)
    if not (root / "train.jsonl").is_file():
        log(f"rendering {cfg.num_videos} synthetic {cfg.codec} videos into {root} ...")
        make_dataset(
            root, num_videos=cfg.num_videos, seed=cfg.seed, codec=cfg.codec,
            width=cfg.width, height=cfg.height, fps=cfg.fps, duration_s=cfg.duration_s,
        )
    return root


@dataclass
class Session:
    """Everything one run builds once: data, model, video service, rollout."""

    train_rows: list
    eval_rows: list
    records: dict
    model: torch.nn.Module
    tokenizer: object
    rollout: GroupedRollout
    end_id: int


def build_session(cfg: Config, log: Callable[[str], None] = print) -> Session:
    root = ensure_dataset(cfg.data, log)
    model, tokenizer = load_policy(cfg.model.path, dtype=DTYPES[cfg.model.dtype], seed=cfg.model.seed)
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    service = VideoService(device=cfg.video.device, backend=cfg.video.backend, cache_bytes=cfg.video.cache_bytes)
    policy = FramePolicy(
        fps=cfg.video.fps, min_frames=cfg.video.min_frames, max_frames=cfg.video.max_frames, max_pixels=cfg.video.max_pixels
    )
    records = load_videos(root)
    return Session(
        train_rows=load_rows(root / "train.jsonl"),
        eval_rows=load_rows(root / "eval.jsonl"),
        records=records,
        model=model,
        tokenizer=tokenizer,
        rollout=build_rollout(cfg, model, tokenizer, service, policy, records),
        end_id=end_id,
    )


def build_rollout(cfg: Config, model, tokenizer, service, policy, records) -> GroupedRollout:
    """The HF backend and the agent loop as cfg.rollout asks (thinker / re-look / tool-using agent)."""
    r = cfg.rollout
    agent = r.mode == "agent"
    loop = LoopConfig(
        tools=agent, relook=r.relook, max_turns=r.max_turns, max_tokens_per_turn=r.max_new_tokens,
        max_total_tokens=r.max_total_tokens or r.max_new_tokens * (r.max_turns + 1),
        max_visual_tokens=r.max_visual_tokens, tool_workers=r.tool_workers,
    )
    registry = None
    if agent:
        from engine.tools import CaptionClipIndex, default_registry

        registry = default_registry(CaptionClipIndex(records))
    merge = model.config.vision_config.spatial_merge_size
    return GroupedRollout(HFBackend(model, tokenizer), tokenizer, service, policy, merge, loop, registry, r.mode,
                          mrope=mrope_config(model.config), relook_frames=r.relook_frames)


def batches(rows: list, size: int, seed: int):
    """Endless stream of `size` rows: a seeded shuffle per epoch."""
    rng = random.Random(seed)
    while True:
        order = rows[:]
        rng.shuffle(order)
        for i in range(0, len(order) - size + 1, size):
            yield order[i : i + size]


def run_sft(cfg: Config, s: Session, log: Callable[[str], None] = print) -> list[float]:
    """Supervised warm-up on ground-truth traces so GRPO starts from a policy that knows the format."""
    optimizer = torch.optim.AdamW(s.model.parameters(), lr=cfg.sft.lr, weight_decay=cfg.optim.weight_decay)
    stream = batches(s.train_rows, min(cfg.sft.batch_size, len(s.train_rows)), cfg.trainer.seed + 1)
    pad_id, video_id = s.tokenizer.pad_token_id, s.model.config.video_token_id
    losses = []
    for step in range(cfg.sft.steps):
        rows = next(stream)
        requests = [s.rollout.prepare(r) for r in rows]
        batch = sft_batch(rows, s.records, requests, s.tokenizer, s.end_id).tensors(pad_id, video_id)
        losses.append(sft_step(s.model, optimizer, batch, cfg.optim.grad_clip))
        if step % 10 == 0 or step == cfg.sft.steps - 1:
            log(f"sft {step + 1}/{cfg.sft.steps} | loss {losses[-1]:.3f}")
    return losses


def train(cfg: Config, log: Callable[[str], None] = print, session: Session | None = None) -> list[dict]:
    """Run cfg.trainer.steps GRPO steps; metrics go to <output_dir>/metrics.jsonl and the log. Returns them."""
    torch.manual_seed(cfg.trainer.seed)
    s = session or build_session(cfg, log)
    if cfg.sft.steps:
        run_sft(cfg, s, log)
    learner = Learner(s.model, cfg.algo, cfg.optim, temperature=cfg.rollout.temperature)
    out = Path(cfg.trainer.output_dir)
    metrics_log = MetricsLog(out, cfg.trainer.steps)
    stream = batches(s.train_rows, min(cfg.trainer.prompts_per_step, len(s.train_rows)), cfg.trainer.seed)
    pad_id, video_id = s.tokenizer.pad_token_id, s.model.config.video_token_id
    history = []
    for step in range(cfg.trainer.steps):
        rows = next(stream)
        t0 = time.perf_counter()
        params = SamplingParams(
            max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p, seed=cfg.trainer.seed * 1_000_003 + step,
        )
        s.model.eval()
        rollout, rewards, rm = _rollout_step(cfg, s, rows, stream, params)
        t1 = time.perf_counter()
        m = {"step": step, **rm}
        if rewards:
            total = torch.tensor([r.total for r in rewards])
            adv = advantages_for(total, cfg.rollout.group_size, cfg.algo.advantage)
            rollout.set_advantages(adv)
            m.update(learner.update(rollout.tensors(pad_id, video_id), adv))
            new_tokens = sum(x.generated_tokens for x in rollout.samples)
            m.update(
                reward_mean=float(total.mean()),
                accuracy=sum(r.accuracy for r in rewards) / len(rewards),
                format=sum(r.format for r in rewards) / len(rewards),
                response_len=new_tokens / len(rewards),
                truncated=sum(not x.finished for x in rollout.samples) / len(rewards),
                tokens_per_s=new_tokens / max(t1 - t0, 1e-9),
            )
        m.update(time_rollout_s=t1 - t0, time_update_s=time.perf_counter() - t1)
        metrics_log.write(m)
        history.append(m)
        log(metrics_log.progress_line(step, m))
    metrics_log.close()
    log(summary_table(history))
    log(f"reward plot: {plot_rewards(history, out / 'reward.png')}")
    final = out / "final"
    s.model.save_pretrained(final)
    s.tokenizer.save_pretrained(final)
    log(f"saved the policy to {final}")
    return history


def _score(cfg: Config, batch: RolloutBatch, by_id: dict) -> list:
    agent = cfg.rollout.mode == "agent"
    rewards = [score_sample(x, by_id[x.row_id], cfg.reward, agent) for x in batch.samples]
    for x, r in zip(batch.samples, rewards):
        x.reward = r.total
    return rewards


def _rollout_step(cfg: Config, s: Session, rows: list, stream, params: SamplingParams):
    """(scored RolloutBatch, rewards, metrics) for one step; with algo.dynamic_sampling, zero-variance
    groups are dropped and refilled from fresh prompts of `stream`."""
    g = cfg.rollout.group_size
    m: dict = {"failed_prompts": 0}
    loops, scored = [], {}

    def draw(k: int):
        batch_rows = rows[:k] if not loops else next(stream)[:k]  # refills take fresh prompts
        batch, st = s.rollout.run(batch_rows, g, replace(params, seed=params.seed + 7919 * len(loops)))
        m["failed_prompts"] += st.failed_prompts
        loops.append(st)
        rewards = _score(cfg, batch, {r.id: r for r in batch_rows})
        scored.update((x.seed, r) for x, r in zip(batch.samples, rewards))  # per-sample seeds are distinct
        return batch.samples, torch.tensor([r.total for r in rewards], dtype=torch.float32)

    if cfg.algo.dynamic_sampling:
        groups, fs = fill_informative(draw, g, len(rows), cfg.algo.dynamic_sampling_max_rounds)
        samples = [replace(x, group=k) for k, grp in enumerate(groups) for x in grp]
        m.update(groups_dropped=fs.groups_dropped, sampling_rounds=fs.rounds)
    else:
        samples, _ = draw(len(rows))
    batch = RolloutBatch(samples, g, s.rollout.mrope)
    rewards = [scored[x.seed] for x in samples]
    n = max(1, len(samples))
    m.update(
        time_generate_s=sum(st.loop.generate_s for st in loops), time_tool_s=sum(st.loop.tool_s for st in loops),
        time_tool_wait_s=sum(st.loop.wait_s for st in loops), time_decode_s=sum(st.decode_s for st in loops),
        tool_calls=sum(len(x.tool_trace) for x in samples) / n,
        tool_errors=sum(sum(x.counters.values()) for x in samples) / n,
        turns=sum(x.turns for x in samples) / n,
    )
    return batch, rewards, m


def evaluate(cfg: Config, log: Callable[[str], None] = print, session: Session | None = None) -> dict:
    """Sample one response per held-out question; report mean accuracy and format reward."""
    s = session or build_session(cfg, log)
    s.model.eval()
    params = SamplingParams(cfg.rollout.max_new_tokens, cfg.rollout.temperature, cfg.rollout.top_p, cfg.trainer.seed)
    by_id = {r.id: r for r in s.eval_rows}
    acc, fmt = [], []
    for i in range(0, len(s.eval_rows), 8):
        rollout, _ = s.rollout.run(s.eval_rows[i : i + 8], 1, replace(params, seed=params.seed + i))
        for r in _score(cfg, rollout, by_id):
            acc.append(r.accuracy)
            fmt.append(r.format)
    result = {"questions": len(acc), "accuracy": sum(acc) / max(1, len(acc)), "format": sum(fmt) / max(1, len(fmt))}
    log(f"eval | {result['questions']} questions | accuracy {result['accuracy']:.3f} | format {result['format']:.3f}")
    return result
