"""Single-process learner: token log-probs from the last hidden states, the GRPO update, and SFT steps."""
from __future__ import annotations

import copy
import math

import torch

from engine.algo.loss import masked_mean, policy_loss
from engine.config import AlgoConfig, OptimConfig

_MODEL_INPUTS = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


def token_logprobs(model, batch: dict[str, torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """log p(input_ids[:, j] | prefix) at every position j where loss_mask is 1; 0 elsewhere. [B, L] fp32.

    Only the masked rows go through the LM head, so the full [B, L, V] logits are never built.
    """
    inputs = {k: batch[k] for k in _MODEL_INPUTS if k in batch}
    if "pixel_values_videos" in inputs:
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(model.dtype)
    hidden = model.model(**inputs).last_hidden_state  # [B, L, H]
    target_mask = batch["loss_mask"][:, 1:].bool()
    h = hidden[:, :-1][target_mask]
    targets = batch["input_ids"][:, 1:][target_mask]
    logits = model.lm_head(h).float() / temperature
    picked = logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    out = torch.zeros(batch["input_ids"].shape, dtype=torch.float32, device=hidden.device)
    shifted = torch.zeros_like(batch["loss_mask"], dtype=torch.bool)
    shifted[:, 1:] = target_mask
    return out.masked_scatter(shifted, picked)


def warmup_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base lr, then constant."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup_steps)))


class Learner:
    """Owns the trainable policy, its frozen reference copy and the optimizer."""

    def __init__(self, model, algo: AlgoConfig, optim: OptimConfig, temperature: float = 1.0):
        self.model = model
        self.algo = algo
        self.optim = optim
        self.temperature = temperature
        self.ref = copy.deepcopy(model).eval().requires_grad_(False) if algo.kl_coef > 0 else None
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        self.scheduler = warmup_schedule(self.optimizer, optim.warmup_steps)

    def update(self, batch: dict[str, torch.Tensor], advantages: torch.Tensor) -> dict[str, float]:
        """One on-policy GRPO step: old log-probs are the current policy's (ratio exactly 1 at the start)."""
        self.model.train()
        mask = batch["loss_mask"]
        logp = token_logprobs(self.model, batch, self.temperature)
        ref_logp = None
        if self.ref is not None:
            with torch.no_grad():
                ref_logp = token_logprobs(self.ref, batch, self.temperature)
        loss, stats = policy_loss(
            logp, logp.detach(), ref_logp, advantages, mask,
            clip_low=self.algo.clip_low, clip_high=self.algo.clip_high, kl_coef=self.algo.kl_coef,
        )
        metrics = {k: float(v) for k, v in stats.items()}
        metrics["loss"] = float(loss.detach())
        if not math.isfinite(metrics["loss"]):
            metrics["skipped_nonfinite"] = 1.0
            return metrics
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        metrics["rollout_logp_gap"] = float(masked_mean((logp.detach() - batch["rollout_logp"]).abs(), mask))
        return metrics


def sft_step(model, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], grad_clip: float) -> float:
    """One supervised step: mean negative log-likelihood of the response tokens."""
    model.train()
    logp = token_logprobs(model, batch)
    loss = -masked_mean(logp, batch["loss_mask"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())
