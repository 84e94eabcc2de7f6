"""Clipped policy-gradient loss with a KL penalty: the walking skeleton's loss until kernels.grpo_loss lands."""
from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip surrogate, token-mean, plus kl_coef * k3 KL to the reference.

    ratio = exp(clamp(logp - old_logp, -20, 20)); pg = max(-A*ratio, -A*clip(ratio, 1-cl, 1+ch));
    k3 = exp(ref - logp) - (ref - logp) - 1, clamped to [-10, 10].
    """
    mask = mask.to(logp.dtype)
    adv = advantages if advantages.dim() == 2 else advantages[:, None].expand_as(logp)
    log_ratio = (logp - old_logp).clamp(-20.0, 20.0)
    ratio = log_ratio.exp()
    pg1 = -adv * ratio
    pg2 = -adv * ratio.clamp(1 - clip_low, 1 + clip_high)
    loss = masked_mean(torch.maximum(pg1, pg2), mask)
    stats = {
        "clip_frac": masked_mean((pg2 > pg1).to(logp.dtype), mask).detach(),
        "ratio_mean": masked_mean(ratio, mask).detach(),
    }
    if ref_logp is not None:
        d = (ref_logp - logp).clamp(-20.0, 20.0)
        kl = (d.exp() - d - 1).clamp(-10.0, 10.0)
        kl_mean = masked_mean(kl, mask)
        loss = loss + kl_coef * kl_mean
        stats["kl"] = kl_mean.detach()
    return loss, stats
