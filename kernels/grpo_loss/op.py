"""grpo_loss: the fused GRPO policy loss + KL + entropy bonus as a torch custom op with autograd.

Semantics are verl's compute_policy_loss_vanilla, kl_penalty and agg_loss. Per token, with
r = exp(clamp(logp - old_logp, -20, 20)) and advantage A:

    pg1 = -A r,   pg2 = -A clamp(r, 1 - clip_low, 1 + clip_high),   pg = max(pg1, pg2)
    dual clip c (only where A < 0):   pg = min(-A c, max(pg1, pg2))
    kl:  k1 = logp - ref,  k2 = (logp - ref)^2 / 2,  abs = |logp - ref|,
         k3 = clamp(e^y - y - 1, -10, 10) with y = clamp(ref - logp, -20, 20)   (verl's low_var_kl)

and agg(x) over the mask m (L_b = tokens of sequence b, S = #sequences with L_b > 0):

    token-mean                 sum_bt m x / sum_bt m
    seq-mean-token-sum         (1/S) sum_b sum_t m x
    seq-mean-token-mean        (1/S) sum_b (sum_t m x) / (L_b + 1e-8)
    seq-mean-token-sum-norm    (1/S) sum_b sum_t m x / max_len      (Dr.GRPO; max_len defaults to T)

    loss = agg(pg) + kl_coef * agg(kl) - entropy_coef * agg(entropy)

Stats (0-d tensors, no host sync), with mean_m(x) = sum m x / (sum m + 1e-8) as in verl:
clip_frac = mean_m[pg2 > pg1], approx_kl = mean_m(-clamp(logp - old, -20, 20)),
kl = agg(kl) (0 without ref_logp), ratio_mean = mean_m(r), entropy_mean = mean_m(entropy) (0 without it).
Gradients at ties of max/min follow PyTorch (the mean of both sides), as verl's would; clamps pass
the gradient on their closed interval. Deliberate difference: all-masked batches give 0, not NaN.
"""
from typing import Optional

import torch

from kernels._backend import resolve
from kernels.errors import KernelInputError
from kernels.grpo_loss import torch_impl
from kernels.grpo_loss import triton as grpo_triton
from kernels.grpo_loss.config import GRPOConfig

STAT_NAMES = ("clip_frac", "approx_kl", "kl", "ratio_mean", "entropy_mean")


def impl(backend: str):
    return grpo_triton if backend == "triton" else torch_impl


def _cfg(clip_low, clip_high, dual_clip, kl_type, kl_coef, agg, entropy_coef, max_len) -> GRPOConfig:
    return GRPOConfig(clip_low=clip_low, clip_high=clip_high, dual_clip=None if dual_clip <= 0 else dual_clip,
                      kl_type=kl_type, kl_coef=kl_coef, agg=agg, entropy_coef=entropy_coef,
                      max_len=None if max_len <= 0 else max_len)


@torch.library.custom_op("vthink::grpo_loss_fwd", mutates_args=())
def grpo_loss_fwd(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: Optional[torch.Tensor],
                  advantages: torch.Tensor, mask: torch.Tensor, entropy: Optional[torch.Tensor],
                  clip_low: float, clip_high: float, dual_clip: float, kl_type: str, kl_coef: float, agg: str,
                  entropy_coef: float, max_len: int, backend: str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (out [6] = loss + stats, dL/dlogp [B, T], dL/dentropy [B, T] or [0])."""
    cfg = _cfg(clip_low, clip_high, dual_clip, kl_type, kl_coef, agg, entropy_coef, max_len)
    B, T = logp.shape
    k = impl(resolve(logp.device, backend))
    rows = k.row_tokens(mask)
    flat = lambda x: None if x is None else x.contiguous().reshape(-1)  # noqa: E731
    per_tok = advantages.dim() == 2
    g, g_ent, part = k.token_terms(flat(logp), flat(entropy), 0, flat(old_logp), flat(ref_logp),
                                   flat(advantages), per_tok, flat(mask), rows, T, cfg)
    out = k.finalize(part, cfg)
    g_ent = logp.new_empty(0) if g_ent is None else g_ent.to(logp.dtype).view(B, T)
    return out.to(logp.dtype), g.to(logp.dtype).view(B, T), g_ent


@grpo_loss_fwd.register_fake
def _(logp, old_logp, ref_logp, advantages, mask, entropy, clip_low, clip_high, dual_clip, kl_type, kl_coef,
      agg, entropy_coef, max_len, backend):
    g_ent = logp.new_empty(logp.shape) if entropy is not None else logp.new_empty(0)
    return logp.new_empty(6), torch.empty_like(logp), g_ent


def _setup(ctx, inputs, output):
    _, g, g_ent = output
    ctx.save_for_backward(g, g_ent)
    ctx.has_ent = inputs[5] is not None


def _backward(ctx, g_out, _g, _ge):
    g, g_ent = ctx.saved_tensors
    scale = g_out[0]
    grad_ent = g_ent * scale if ctx.has_ent else None
    return (g * scale, None, None, None, None, grad_ent) + (None,) * 9


grpo_loss_fwd.register_autograd(_backward, setup_context=_setup)


def _check(logp, old_logp, ref_logp, advantages, mask, entropy) -> None:
    if logp.dim() != 2:
        raise KernelInputError("logp", f"must be [B, T], got shape {tuple(logp.shape)}")
    if not logp.is_floating_point():
        raise KernelInputError("logp", f"must be floating point, got {logp.dtype}")
    for name, x in (("old_logp", old_logp), ("ref_logp", ref_logp), ("mask", mask), ("entropy", entropy)):
        if x is not None and tuple(x.shape) != tuple(logp.shape):
            raise KernelInputError(name, f"must have logp's shape {tuple(logp.shape)}, got {tuple(x.shape)}")
    if tuple(advantages.shape) not in ((logp.shape[0],), tuple(logp.shape)):
        raise KernelInputError("advantages", f"must be [B] or [B, T], got {tuple(advantages.shape)}")
    for name, x in (("old_logp", old_logp), ("ref_logp", ref_logp), ("advantages", advantages),
                    ("mask", mask), ("entropy", entropy)):
        if x is not None and x.device != logp.device:
            raise KernelInputError(name, f"is on {x.device}, logp on {logp.device}")


def grpo_loss_with_backend(logp, old_logp, ref_logp, advantages, mask, *, clip_low=0.2, clip_high=0.2,
                           dual_clip=None, kl_type="k3", kl_coef=0.0, agg="token-mean", entropy=None,
                           entropy_coef=0.0, max_len=None, backend="auto"):
    """grpo_loss with an explicit backend ("auto" | "triton" | "torch")."""
    cfg = GRPOConfig(clip_low, clip_high, dual_clip, kl_type, kl_coef, agg, entropy_coef, max_len)
    cfg.validate(has_ref=ref_logp is not None, has_entropy=entropy is not None)
    _check(logp, old_logp, ref_logp, advantages, mask, entropy)
    out, _, _ = grpo_loss_fwd(logp, old_logp.detach(), None if ref_logp is None else ref_logp.detach(),
                              advantages.detach(), mask.detach(), entropy, float(clip_low), float(clip_high),
                              float(dual_clip or 0.0), kl_type, float(kl_coef), agg, float(entropy_coef),
                              int(max_len or 0), backend)
    return out[0], dict(zip(STAT_NAMES, out[1:].detach().unbind()))


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: Optional[torch.Tensor],
              advantages: torch.Tensor, mask: torch.Tensor, *, clip_low: float = 0.2, clip_high: float = 0.2,
              dual_clip: Optional[float] = None, kl_type: str = "k3", kl_coef: float = 0.0,
              agg: str = "token-mean", entropy: Optional[torch.Tensor] = None, entropy_coef: float = 0.0,
              max_len: Optional[int] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Fused GRPO loss (see the module docstring for the formulas). Returns (loss, stats).

    logp/old_logp/ref_logp/mask/entropy: [B, T]; advantages: [B] or [B, T]; ref_logp may be None
    when kl_coef == 0. loss is differentiable w.r.t. logp and entropy.
    """
    return grpo_loss_with_backend(logp, old_logp, ref_logp, advantages, mask, clip_low=clip_low,
                                  clip_high=clip_high, dual_clip=dual_clip, kl_type=kl_type, kl_coef=kl_coef,
                                  agg=agg, entropy=entropy, entropy_coef=entropy_coef, max_len=max_len)
