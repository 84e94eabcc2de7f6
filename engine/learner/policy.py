"""Single-process pieces: token log-probs of a plain model, the warm-up schedule, and the SFT step."""
from __future__ import annotations

import torch

from engine.learner.logprob import policy_logprobs


def token_logprobs(model, batch: dict[str, torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """log p(input_ids[:, j] | prefix) at every position j where loss_mask is 1; 0 elsewhere. [B, L] fp32.

    kernels.linear_logprob on the last hidden states of the masked rows: the [B, L, V] logits are never built.
    """
    return policy_logprobs(model, batch, temperature, with_entropy=False)[0]


def warmup_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base lr, then constant."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup_steps)))


def sft_step(model, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], grad_clip: float) -> float:
    """One supervised step: mean negative log-likelihood of the response tokens."""
    model.train()
    mask = batch["loss_mask"]
    loss = -(token_logprobs(model, batch) * mask).sum() / mask.sum().clamp_min(1)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())
