"""What one process builds from a config: the dataset, the policy, the video service and the rollout engine."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch

from engine.config import Config
from engine.data.sources import Data, prepare
from engine.model import load_policy
from engine.rollout.agent import LoopConfig
from engine.rollout.grouped import GroupedRollout
from engine.rollout.seeds import derive_seed
from engine.video import FramePolicy, VideoService
from engine.video.blank import BlankVideoService
from engine.video.spec import vision_spec


@dataclass
class Session:
    """Everything one process builds once: data, model, video service, rollout."""

    train_rows: list
    eval_rows: list
    records: dict
    model: torch.nn.Module
    tokenizer: object
    rollout: GroupedRollout
    end_id: int


def build_session(cfg: Config, log: Callable[[str], None] = print, data: Data | None = None,
                  purpose: str = "train") -> Session:
    """Checked rows first (engine/data/sources.py; `data` when the caller has them), then the policy."""
    from engine.rollout.hf_backend import HFBackend  # transformers: imported where a model is built

    data = data if data is not None else prepare(cfg, purpose, cfg.trainer.output_dir, log)
    model, tokenizer = load_policy(cfg.model.path, dtype=getattr(torch, cfg.model.dtype), seed=cfg.model.seed, arch=cfg.model.arch)
    records = data.records
    return Session(
        train_rows=data.train,
        eval_rows=data.eval,
        records=records,
        model=model,
        tokenizer=tokenizer,
        rollout=build_rollout(cfg, HFBackend(model, tokenizer), tokenizer, model.config, records),
        end_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )


def build_backend(cfg: Config, device: str | None = None):
    """(backend, tokenizer, model config) for rollout: transformers (cfg.rollout.backend "hf", on `device`: the
    GPU Ray gave the worker, default CUDA when there is one) or vLLM."""
    if cfg.rollout.backend == "vllm":
        from transformers import AutoConfig, AutoTokenizer

        from engine.model import policy_dir
        from engine.model.loading import check_vocab
        from engine.rollout.vllm_backend import VLLMBackend

        path = str(policy_dir(cfg.model))
        tokenizer, config = AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path)
        check_vocab(config, tokenizer)
        from engine.rollout import limits

        # No track_digest: hashing every received tensor on the host would add a full copy to each sync.
        backend = VLLMBackend(path, dtype=cfg.model.dtype, seed=cfg.trainer.seed,
                              max_model_len=limits.max_model_len(cfg.rollout, cfg.video, vision_spec(config)),
                              gpu_memory_utilization=limits.gpu_memory_utilization(cfg.rollout, cfg.ray.colocate))
        return backend, tokenizer, config
    from engine.rollout.hf_backend import HFBackend

    model, tokenizer = load_policy(cfg.model.path, dtype=getattr(torch, cfg.model.dtype), seed=cfg.model.seed, arch=cfg.model.arch)
    # Ray makes an actor's GPU its cuda:0; the backend follows the model.
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return HFBackend(model.to(device).eval(), tokenizer), tokenizer, model.config


def build_rollout(cfg: Config, backend, tokenizer, model_config, records: dict) -> GroupedRollout:
    """The agent loop over `backend` as cfg.rollout asks (thinker / re-look / tool-using agent)."""
    service = VideoService(device=cfg.video.device, backend=cfg.video.backend, cache_bytes=cfg.video.cache_bytes,
                           spec=vision_spec(model_config))
    if cfg.video.blank:
        service = BlankVideoService(service)
    policy = FramePolicy(
        fps=cfg.video.fps, min_frames=cfg.video.min_frames, max_frames=cfg.video.max_frames, max_pixels=cfg.video.max_pixels
    )
    r = cfg.rollout
    agent = r.agent
    loop = LoopConfig.of(r)
    registry = None
    if agent:
        from engine.tools import CaptionClipIndex, ToolRegistry, default_registry

        offered = default_registry(CaptionClipIndex(records), max_zoom_frames=r.max_zoom_frames)
        registry = ToolRegistry([offered.get(name) for name in r.tools])
    return GroupedRollout(backend, tokenizer, service, policy, loop, registry, r.mode, relook_frames=r.relook_frames,
                          layout=cfg.reward.format_layout)


class PromptStream:
    """Endless, resumable stream of prompt batches: a seeded shuffle per epoch; state = (epoch, position)."""

    def __init__(self, rows: list, size: int, seed: int, epoch: int = 0, position: int = 0):
        if not rows:
            raise ValueError("the prompt stream needs at least one row")
        self.rows, self.size, self.seed = rows, min(size, len(rows)), seed
        self.epoch, self.position = epoch, position

    def _order(self) -> list:
        order = self.rows[:]
        random.Random(derive_seed(self.seed, self.epoch, 0, 0)).shuffle(order)
        return order

    def __next__(self) -> list:
        if self.position + self.size > len(self.rows):
            self.epoch, self.position = self.epoch + 1, 0
        batch = self._order()[self.position : self.position + self.size]
        self.position += self.size
        return batch

    def take(self, k: int) -> list:
        """Exactly the next k rows (k <= len(rows)), continuing into the next epoch's order when this one runs
        out: what a refill draws, so no prompt is skipped."""
        out: list = []
        while len(out) < k:
            if self.position >= len(self.rows):
                self.epoch, self.position = self.epoch + 1, 0
            n = min(k - len(out), len(self.rows) - self.position)
            out += self._order()[self.position : self.position + n]
            self.position += n
        return out

    def __iter__(self):
        return self

    def state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}
