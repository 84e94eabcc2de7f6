"""GRPO loss + KL in plain PyTorch with analytic per-token gradients (the CPU path).

Works on flat token ranges so the loss-in-forward path can call it chunk by chunk; `finalize`
turns the partial sums (config.PARTIALS) into the loss and the stats.
"""
from typing import Optional

import torch

from kernels.grpo_loss.config import GRPOConfig


def row_tokens(mask: torch.Tensor) -> torch.Tensor:
    """Tokens per sequence, fp32 [B]."""
    return (mask != 0).sum(-1).to(torch.float32)


def _row_scale(rows: torch.Tensor, cfg: GRPOConfig, seq_len: int) -> torch.Tensor:
    """Per-sequence weight of a masked token in the aggregate (agg = sum over tokens of w * x)."""
    if cfg.agg == "token-mean":
        return (1.0 / rows.sum().clamp_min(1)).expand_as(rows)
    n_seq = (rows > 0).sum().clamp_min(1).to(rows.dtype)
    if cfg.agg == "seq-mean-token-sum":
        return (1.0 / n_seq).expand_as(rows)
    if cfg.agg == "seq-mean-token-mean":
        return 1.0 / ((rows + 1e-8) * n_seq)
    max_len = cfg.max_len if cfg.max_len is not None else seq_len
    return (1.0 / (n_seq * max_len)).expand_as(rows)


def _tie(a_wins: torch.Tensor, b_wins: torch.Tensor, da: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    # gradient of max/min as PyTorch defines it: the winner's, or the mean of both on a tie
    return torch.where(a_wins, da, torch.where(b_wins, db, 0.5 * (da + db)))


def token_terms(lp: torch.Tensor, ent: Optional[torch.Tensor], tok0: int, old: torch.Tensor,
                ref: Optional[torch.Tensor], adv: torch.Tensor, adv_per_token: bool, mask: torch.Tensor,
                rows: torch.Tensor, seq_len: int, cfg: GRPOConfig):
    """For flat tokens [tok0, tok0 + len(lp)): (dL/dlogp, dL/dentropy or None, partials [1, 8]).

    old/ref/mask are flat [B*T]; adv is flat [B*T] when adv_per_token else [B]; rows = row_tokens(mask).
    """
    n = lp.shape[0]
    dt = lp.dtype
    sl = slice(tok0, tok0 + n)
    idx = torch.arange(tok0, tok0 + n, device=lp.device)
    b = idx // seq_len
    m = mask[sl] != 0
    zero = torch.zeros((), dtype=dt, device=lp.device)
    w = torch.where(m, _row_scale(rows.to(dt), cfg, seq_len)[b], zero)
    a = adv[sl].to(dt) if adv_per_token else adv.to(dt)[b]
    diff = lp - old[sl].to(dt)
    d = diff.clamp(-20.0, 20.0)
    r = torch.exp(d)
    dr = torch.where((diff >= -20.0) & (diff <= 20.0), r, zero)
    lo, hi = 1.0 - cfg.clip_low, 1.0 + cfg.clip_high
    rc = r.clamp(lo, hi)
    drc = torch.where((r >= lo) & (r <= hi), dr, zero)
    pg1, pg2 = -a * r, -a * rc
    clip1 = torch.maximum(pg1, pg2)
    dclip1 = _tie(pg1 > pg2, pg2 > pg1, -a * dr, -a * drc)
    pg, dpg = clip1, dclip1
    if cfg.dual_clip is not None:
        pg3 = -a * cfg.dual_clip
        clip2 = torch.minimum(pg3, clip1)
        dclip2 = _tie(pg3 < clip1, clip1 < pg3, zero.expand_as(dclip1), dclip1)
        neg = a < 0
        pg, dpg = torch.where(neg, clip2, clip1), torch.where(neg, dclip2, dclip1)
    g = w * dpg
    kl_w = zero
    if ref is not None:
        x = lp - ref[sl].to(dt)
        if cfg.kl_type == "k1":
            kl, dkl = x, torch.ones_like(x)
        elif cfg.kl_type == "abs":
            kl, dkl = x.abs(), torch.sign(x)
        elif cfg.kl_type == "k2":
            kl, dkl = 0.5 * x * x, x
        else:  # k3 on y = ref - logp: clamp(exp(y') - y' - 1, -10, 10), y' = clamp(y, -20, 20)
            y = -x
            yc = y.clamp(-20.0, 20.0)
            k = torch.exp(yc) - yc - 1
            kl = k.clamp(-10.0, 10.0)
            dk = torch.where((y >= -20.0) & (y <= 20.0), -(torch.exp(yc) - 1), zero)
            dkl = torch.where((k >= -10.0) & (k <= 10.0), dk, zero)
        kl_w = (w * torch.where(m, kl, zero)).sum()
        g = g + w * (cfg.kl_coef * dkl)
    ent_w, ent_m, g_ent = zero, zero, None
    if ent is not None:
        e = torch.where(m, ent.to(dt), zero)
        ent_w, ent_m = (w * e).sum(), e.sum()
        g_ent = -cfg.entropy_coef * w
    g = torch.where(m, g, zero)  # NaN/inf in padded positions must not leak into the gradient
    mf = m.to(dt)
    part = torch.stack([
        (w * torch.where(m, pg, zero)).sum(), kl_w, ent_w, (mf * (pg2 > pg1)).sum(),
        torch.where(m, -d, zero).sum(), torch.where(m, r, zero).sum(), ent_m, mf.sum(),
    ])
    return g, g_ent, part[None]


def finalize(parts: torch.Tensor, cfg: GRPOConfig) -> torch.Tensor:
    """[loss, clip_frac, approx_kl, kl, ratio_mean, entropy_mean] from partial sums [k, 8]."""
    pg_w, kl_w, ent_w, clip_n, negkl_m, ratio_m, ent_m, mask_n = parts.sum(0).unbind()
    den = mask_n + 1e-8
    loss = pg_w + cfg.kl_coef * kl_w - cfg.entropy_coef * ent_w
    return torch.stack([loss, clip_n / den, negkl_m / den, kl_w, ratio_m / den, ent_m / den])
