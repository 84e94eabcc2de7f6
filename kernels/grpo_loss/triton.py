"""Triton GRPO loss + KL: one pass over the tokens gives the gradient and per-block partial sums.

Three launches whatever B*T: tokens per sequence (grid B), the token kernel (loss terms, dL/dlogp,
dL/dentropy, partial sums per block; every block re-derives the global normalisers from the B row
counts), and a one-program reduction into [loss, clip_frac, approx_kl, kl, ratio_mean,
entropy_mean]. Math and tie rules are those of torch_impl.py. Loads are upcast to fp32 at once.
"""
from typing import Optional

import torch
import triton
import triton.language as tl
from triton.language.standard import _elementwise_max, _sum_combine  # tl.sum/tl.max are jit functions fixed at import; these work in both modes

from kernels._backend import interpreting
from kernels._triton_jit import kernel
from kernels.grpo_loss.config import N_PARTIALS, GRPOConfig


def _rows_kernel(mask_ptr, rows_ptr, T, BT: tl.constexpr):
    b = tl.program_id(0)
    acc = tl.full([BT], 0.0, tl.float32)
    for t0 in range(0, T, BT):
        ts = t0 + tl.arange(0, BT)
        mk = tl.load(mask_ptr + b * T + ts, mask=ts < T, other=0).to(tl.float32)
        acc += tl.where(mk != 0, 1.0, 0.0)
    tl.store(rows_ptr + b, tl.reduce(acc, 0, _sum_combine))


def _token_kernel(lp_ptr, ent_ptr, old_ptr, ref_ptr, adv_ptr, mask_ptr, rows_ptr, glp_ptr, gent_ptr, part_ptr,
                  tok0, n_tok, B, T, clip_lo, clip_hi, dual_c, kl_coef, ent_coef, max_len,
                  AGG: tl.constexpr, KL: tl.constexpr, HAS_REF: tl.constexpr, HAS_ENT: tl.constexpr,
                  DUAL: tl.constexpr, ADV_TOK: tl.constexpr, BLOCK: tl.constexpr, BB: tl.constexpr):
    pid = tl.program_id(0)
    # global normalisers from the per-sequence token counts
    n_all = tl.full([BB], 0.0, tl.float32)
    n_seq = tl.full([BB], 0.0, tl.float32)
    for b0 in range(0, B, BB):
        bs = b0 + tl.arange(0, BB)
        rw = tl.load(rows_ptr + bs, mask=bs < B, other=0.0)
        n_all += rw
        n_seq += tl.where(rw > 0, 1.0, 0.0)
    n_all_s = tl.maximum(tl.reduce(n_all, 0, _sum_combine), 1.0)
    n_seq_s = tl.maximum(tl.reduce(n_seq, 0, _sum_combine), 1.0)

    loc = pid * BLOCK + tl.arange(0, BLOCK)
    ok = loc < n_tok
    idx = tok0 + loc
    b = idx // T
    m = (tl.load(mask_ptr + idx, mask=ok, other=0).to(tl.float32) != 0) & ok
    if AGG == 0:
        scale = tl.full([BLOCK], 0.0, tl.float32) + 1.0 / n_all_s
    elif AGG == 1:
        scale = tl.full([BLOCK], 0.0, tl.float32) + 1.0 / n_seq_s
    elif AGG == 2:
        rb = tl.load(rows_ptr + b, mask=ok, other=1.0)
        scale = 1.0 / ((rb + 1e-8) * n_seq_s)
    else:
        scale = tl.full([BLOCK], 0.0, tl.float32) + 1.0 / (n_seq_s * max_len)
    w = tl.where(m, scale, 0.0)
    lp = tl.load(lp_ptr + loc, mask=ok, other=0.0).to(tl.float32)
    old = tl.load(old_ptr + idx, mask=ok, other=0.0).to(tl.float32)
    if ADV_TOK:
        a = tl.load(adv_ptr + idx, mask=ok, other=0.0).to(tl.float32)
    else:
        a = tl.load(adv_ptr + b, mask=ok, other=0.0).to(tl.float32)

    diff = lp - old
    d = tl.minimum(tl.maximum(diff, -20.0), 20.0)
    r = tl.exp(d)
    dr = tl.where((diff >= -20.0) & (diff <= 20.0), r, 0.0)
    rc = tl.minimum(tl.maximum(r, clip_lo), clip_hi)
    drc = tl.where((r >= clip_lo) & (r <= clip_hi), dr, 0.0)
    pg1 = -a * r
    pg2 = -a * rc
    clip1 = tl.maximum(pg1, pg2)
    # gradient of max/min as PyTorch defines it: the winner's, or the mean of both on a tie
    dclip1 = tl.where(pg1 > pg2, -a * dr, tl.where(pg2 > pg1, -a * drc, -0.5 * a * (dr + drc)))
    pg = clip1
    dpg = dclip1
    if DUAL:
        pg3 = -a * dual_c
        clip2 = tl.minimum(pg3, clip1)
        dclip2 = tl.where(pg3 < clip1, 0.0, tl.where(clip1 < pg3, dclip1, 0.5 * dclip1))
        pg = tl.where(a < 0, clip2, clip1)
        dpg = tl.where(a < 0, dclip2, dclip1)
    g = w * dpg
    kl_w = 0.0
    if HAS_REF:
        x = lp - tl.load(ref_ptr + idx, mask=ok, other=0.0).to(tl.float32)
        if KL == 0:
            kl = x
            dkl = 1.0 + 0.0 * x
        elif KL == 1:
            kl = 0.5 * x * x
            dkl = x
        elif KL == 2:
            y = -x
            yc = tl.minimum(tl.maximum(y, -20.0), 20.0)
            ey = tl.exp(yc)
            k = ey - yc - 1.0
            kl = tl.minimum(tl.maximum(k, -10.0), 10.0)
            dk = tl.where((y >= -20.0) & (y <= 20.0), -(ey - 1.0), 0.0)
            dkl = tl.where((k >= -10.0) & (k <= 10.0), dk, 0.0)
        else:
            kl = tl.abs(x)
            dkl = tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))
        kl_w = tl.reduce(w * tl.where(m, kl, 0.0), 0, _sum_combine)
        g = g + w * (kl_coef * dkl)
    g = tl.where(m, g, 0.0)
    tl.store(glp_ptr + loc, g, mask=ok)
    ent_w = 0.0
    ent_m = 0.0
    if HAS_ENT:
        e = tl.where(m, tl.load(ent_ptr + loc, mask=ok, other=0.0).to(tl.float32), 0.0)
        ent_w = tl.reduce(w * e, 0, _sum_combine)
        ent_m = tl.reduce(e, 0, _sum_combine)
        tl.store(gent_ptr + loc, -ent_coef * w, mask=ok)
    mf = tl.where(m, 1.0, 0.0)
    p = part_ptr + pid * 8
    tl.store(p + 0, tl.reduce(w * tl.where(m, pg, 0.0), 0, _sum_combine))
    tl.store(p + 1, kl_w)
    tl.store(p + 2, ent_w)
    tl.store(p + 3, tl.reduce(tl.where(m & (pg2 > pg1), 1.0, 0.0), 0, _sum_combine))
    tl.store(p + 4, tl.reduce(tl.where(m, -d, 0.0), 0, _sum_combine))
    tl.store(p + 5, tl.reduce(tl.where(m, r, 0.0), 0, _sum_combine))
    tl.store(p + 6, ent_m)
    tl.store(p + 7, tl.reduce(mf, 0, _sum_combine))


def _finalize_kernel(part_ptr, out_ptr, n_rows, kl_coef, ent_coef, BP: tl.constexpr):
    cols = tl.arange(0, 8)
    acc = tl.full([BP, 8], 0.0, tl.float32)
    for r0 in range(0, n_rows, BP):
        rs = r0 + tl.arange(0, BP)
        acc += tl.load(part_ptr + rs[:, None] * 8 + cols[None, :], mask=(rs < n_rows)[:, None], other=0.0)
    tot = tl.reduce(acc, 0, _sum_combine)
    pg_w = tl.reduce(tl.where(cols == 0, tot, 0.0), 0, _sum_combine)
    kl_w = tl.reduce(tl.where(cols == 1, tot, 0.0), 0, _sum_combine)
    ent_w = tl.reduce(tl.where(cols == 2, tot, 0.0), 0, _sum_combine)
    den = tl.reduce(tl.where(cols == 7, tot, 0.0), 0, _sum_combine) + 1e-8
    tl.store(out_ptr + 0, pg_w + kl_coef * kl_w - ent_coef * ent_w)
    tl.store(out_ptr + 1, tl.reduce(tl.where(cols == 3, tot, 0.0), 0, _sum_combine) / den)
    tl.store(out_ptr + 2, tl.reduce(tl.where(cols == 4, tot, 0.0), 0, _sum_combine) / den)
    tl.store(out_ptr + 3, kl_w)
    tl.store(out_ptr + 4, tl.reduce(tl.where(cols == 5, tot, 0.0), 0, _sum_combine) / den)
    tl.store(out_ptr + 5, tl.reduce(tl.where(cols == 6, tot, 0.0), 0, _sum_combine) / den)


def _block() -> int:
    return 256 if interpreting() else 1024


def row_tokens(mask: torch.Tensor) -> torch.Tensor:
    B, T = mask.shape
    rows = torch.empty(B, dtype=torch.float32, device=mask.device)
    mask = mask.contiguous()
    if mask.dtype == torch.bool:
        mask = mask.view(torch.uint8)
    kernel(_rows_kernel)[(B,)](mask, rows, T, BT=min(1024, triton.next_power_of_2(T)))
    return rows


def token_terms(lp: torch.Tensor, ent: Optional[torch.Tensor], tok0: int, old: torch.Tensor,
                ref: Optional[torch.Tensor], adv: torch.Tensor, adv_per_token: bool, mask: torch.Tensor,
                rows: torch.Tensor, seq_len: int, cfg: GRPOConfig):
    """Same contract as torch_impl.token_terms; returns fp32 gradients and partials [blocks, 8]."""
    n = lp.shape[0]
    block = _block()
    grid = triton.cdiv(n, block)
    dev = lp.device
    g = torch.empty(n, dtype=torch.float32, device=dev)
    g_ent = torch.empty(n, dtype=torch.float32, device=dev) if ent is not None else None
    part = torch.empty(grid, N_PARTIALS, dtype=torch.float32, device=dev)
    if mask.dtype == torch.bool:
        mask = mask.view(torch.uint8)
    B = rows.shape[0]
    max_len = cfg.max_len if cfg.max_len is not None else seq_len
    kernel(_token_kernel)[(grid,)](
        lp.contiguous(), ent.contiguous() if ent is not None else lp, old, ref if ref is not None else old, adv,
        mask, rows, g, g_ent if g_ent is not None else g, part,
        tok0, n, B, seq_len, 1.0 - cfg.clip_low, 1.0 + cfg.clip_high,
        float(cfg.dual_clip or 0.0), float(cfg.kl_coef), float(cfg.entropy_coef), float(max_len),
        AGG=cfg.agg_code, KL=cfg.kl_code, HAS_REF=ref is not None, HAS_ENT=ent is not None,
        DUAL=cfg.dual_clip is not None, ADV_TOK=adv_per_token, BLOCK=block,
        BB=min(1024, triton.next_power_of_2(max(B, 1))))
    return g, g_ent, part


def finalize(parts: torch.Tensor, cfg: GRPOConfig) -> torch.Tensor:
    out = torch.empty(6, dtype=torch.float32, device=parts.device)
    kernel(_finalize_kernel)[(1,)](parts.contiguous(), out, parts.shape[0], float(cfg.kl_coef),
                                   float(cfg.entropy_coef), BP=64 if interpreting() else 256)
    return out
