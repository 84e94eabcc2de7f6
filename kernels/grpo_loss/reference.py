"""Eager reimplementation of verl's compute_policy_loss_vanilla + kl_penalty + agg_loss (by autograd).

Written from verl's semantics, op for op (clamp, maximum, minimum, where), so its gradients at ties
follow PyTorch's rules exactly like verl's; used in float64 by the tests and as the eager baseline
of the benchmark. The one deliberate difference from verl: denominators (token count, number of
non-empty sequences) are clamped to >= 1, so an all-masked batch gives 0 instead of NaN.
"""
from typing import Optional

import torch

from kernels.grpo_loss.config import GRPOConfig


def _masked_sum(x: torch.Tensor, m: torch.Tensor, dim=None) -> torch.Tensor:
    x = torch.where(m, x, torch.zeros_like(x))
    return x.sum() if dim is None else x.sum(dim)


def _masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return _masked_sum(x, m) / (m.sum() + 1e-8)


def agg(loss_mat: torch.Tensor, m: torch.Tensor, mode: str, max_len: Optional[int]) -> torch.Tensor:
    if mode == "token-mean":
        return _masked_sum(loss_mat, m) / m.sum().clamp_min(1)
    seq_tokens = m.sum(-1)
    seq_ok = seq_tokens > 0
    n_seq = seq_ok.sum().clamp_min(1)
    if mode in ("seq-mean-token-sum", "seq-mean-token-sum-norm"):
        seq = _masked_sum(loss_mat, m, -1)
        out = _masked_sum(seq, seq_ok) / n_seq
        if mode == "seq-mean-token-sum-norm":
            out = out / (max_len if max_len is not None else m.shape[-1])
        return out
    if mode == "seq-mean-token-mean":
        seq = _masked_sum(loss_mat, m, -1) / (seq_tokens + 1e-8)
        return _masked_sum(seq, seq_ok) / n_seq
    raise ValueError(mode)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kl_type: str) -> torch.Tensor:
    if kl_type == "k1":
        return logp - ref_logp
    if kl_type == "abs":
        return (logp - ref_logp).abs()
    if kl_type == "k2":
        return 0.5 * (logp - ref_logp).square()
    if kl_type == "k3":
        kl = torch.clamp(ref_logp - logp, min=-20, max=20)
        return torch.clamp(kl.exp() - kl - 1, min=-10, max=10)
    raise ValueError(kl_type)


def grpo_loss_reference(logp, old_logp, ref_logp, advantages, mask, cfg: GRPOConfig,
                        entropy: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    m = mask.bool()
    adv = advantages if advantages.dim() == 2 else advantages[:, None].expand_as(logp)
    neg_kl = torch.clamp(logp - old_logp, min=-20.0, max=20.0)
    ratio = torch.exp(neg_kl)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - cfg.clip_low, 1 + cfg.clip_high)
    clip1 = torch.maximum(pg1, pg2)
    pg = clip1
    if cfg.dual_clip is not None:
        pg3 = -adv * cfg.dual_clip
        pg = torch.where(adv < 0, torch.min(pg3, clip1), clip1)
    loss = agg(pg, m, cfg.agg, cfg.max_len)
    zero = torch.zeros((), dtype=logp.dtype)
    kl_val = zero
    if ref_logp is not None:
        kl_val = agg(kl_penalty(logp, ref_logp, cfg.kl_type), m, cfg.agg, cfg.max_len)
        loss = loss + cfg.kl_coef * kl_val
    ent_mean = zero
    if entropy is not None:
        if cfg.entropy_coef != 0.0:
            loss = loss - cfg.entropy_coef * agg(entropy, m, cfg.agg, cfg.max_len)
        ent_mean = _masked_mean(entropy, m)
    stats = {
        "clip_frac": _masked_mean(torch.gt(pg2, pg1).to(logp.dtype), m),
        "approx_kl": _masked_mean(-neg_kl, m),
        "kl": kl_val,
        "ratio_mean": _masked_mean(ratio, m),
        "entropy_mean": ent_mean,
    }
    return loss, {k: v.detach() for k, v in stats.items()}
