"""Single-process learner: token log-probs from the last hidden states, the GRPO update, and SFT steps."""
from __future__ import annotations

import copy
import math

import torch

from engine.algo.loss import masked_mean
from engine.config import AlgoConfig, OptimConfig
from engine.learner.logprob import policy_logprobs
from kernels import grpo_loss


def token_logprobs(model, batch: dict[str, torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """log p(input_ids[:, j] | prefix) at every position j where loss_mask is 1; 0 elsewhere. [B, L] fp32.

    kernels.linear_logprob on the last hidden states of the masked rows: the [B, L, V] logits are never built.
    """
    return policy_logprobs(model, batch, temperature, with_entropy=False)[0]


def warmup_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base lr, then constant."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup_steps)))


class Learner:
    """Owns the trainable policy, its frozen reference copy and the optimizer."""

    def __init__(self, model, algo: AlgoConfig, optim: OptimConfig, temperature: float = 1.0,
                 max_len: int | None = None):
        self.model = model
        self.max_len = max_len  # the seq-mean-token-sum-norm constant: the rollout's response token budget
        self.algo = algo
        self.optim = optim
        self.temperature = temperature
        self.ref = copy.deepcopy(model).eval().requires_grad_(False) if algo.kl_coef > 0 else None
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        self.scheduler = warmup_schedule(self.optimizer, optim.warmup_steps)

    def update(self, batch: dict[str, torch.Tensor], advantages: torch.Tensor) -> dict[str, float]:
        """One on-policy GRPO step: old log-probs are the current policy's (ratio exactly 1 at the start)."""
        self.model.train()
        mask = batch["loss_mask"].clone()
        mask[:, 0] = 0  # the first token has no prefix to be predicted from
        logp, entropy = policy_logprobs(self.model, batch, self.temperature, with_entropy=True)
        ref_logp = None
        if self.ref is not None:
            with torch.no_grad():
                ref_logp = token_logprobs(self.ref, batch, self.temperature)
        algo = self.algo
        loss, stats = grpo_loss(
            logp, logp.detach(), ref_logp, advantages.float(), mask, clip_low=algo.clip_low,
            clip_high=algo.clip_high, kl_type=algo.kl_type, kl_coef=algo.kl_coef if ref_logp is not None else 0.0,
            agg=algo.loss_agg, entropy=entropy, entropy_coef=algo.entropy_coef, max_len=self.max_len,
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
