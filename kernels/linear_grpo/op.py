"""linear_grpo_loss: loss-in-forward fusion of linear_logprob and grpo_loss (3 GEMMs, no recompute).

Every GRPO term is local to its token once the normalisers (tokens per sequence) are known from the
mask, so dL/dlogp of a chunk of tokens is available as soon as that chunk's log-probs are: the
forward computes each chunk's logits once, its log-probs, dL/dlogp, dL/dlogits and the gradient
GEMMs, and the backward only scales the stored gradients by the upstream scalar. Same semantics
as grpo_loss(linear_logprob(...)) (see kernels/grpo_loss/op.py for the formulas); the log-probs are
bit-identical to linear_logprob's.
"""
from typing import Optional

import torch

from kernels._backend import resolve
from kernels.errors import KernelInputError
from kernels.grpo_loss import op as grpo_op
from kernels.grpo_loss.config import GRPOConfig
from kernels.linear_logprob import torch_impl
from kernels.linear_logprob import op as lop
from kernels.linear_logprob import triton as lt


@torch.library.custom_op("vthink::linear_grpo_fwd", mutates_args=())
def linear_grpo_fwd(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, old_logp: torch.Tensor,
                    ref_logp: Optional[torch.Tensor], advantages: torch.Tensor, mask: torch.Tensor,
                    temperature: float, ignore_index: int, with_entropy: bool, clip_low: float, clip_high: float,
                    dual_clip: float, kl_type: str, kl_coef: float, agg: str, entropy_coef: float, max_len: int,
                    backend: str, old_from_current: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (out [6] = loss + stats, logp [N], entropy [N], grad_hidden, grad_weight). old_from_current: the old
    log-probs are the ones this pass computes (on-policy, ratio 1), filled in chunk by chunk."""
    cfg = grpo_op._cfg(clip_low, clip_high, dual_clip, kl_type, kl_coef, agg, entropy_coef, max_len)
    be = resolve(hidden.device, backend)
    k = grpo_op.impl(be)
    B, T = mask.shape
    rows = k.row_tokens(mask)
    flat = lambda x: None if x is None else x.contiguous().reshape(-1)  # noqa: E731
    old, ref, adv, m = flat(old_logp), flat(ref_logp), flat(advantages), flat(mask)
    if old_from_current:
        old = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    per_tok = advantages.dim() == 2
    parts: list[torch.Tensor] = []

    def grad_fn(r0: int, r1: int, lp: torch.Tensor, en: torch.Tensor):
        if old_from_current:
            old[r0:r1] = lp.detach()
        g, g_ent, part = k.token_terms(lp, en if with_entropy else None, r0, old, ref, adv, per_tok, m, rows, T, cfg)
        parts.append(part)
        return g, (g_ent if cfg.entropy_coef != 0.0 else None)

    if be == "triton":
        logp, ent, gh, gw = lt.forward_backward(hidden, weight, targets, temperature, ignore_index, grad_fn)
    else:
        logp, ent, gh, gw = torch_impl.forward_backward(hidden, weight, targets, temperature, ignore_index,
                                                     with_entropy, grad_fn)
    out = k.finalize(torch.cat(parts), cfg).to(logp.dtype)
    return out, logp, ent, gh, gw


@linear_grpo_fwd.register_fake
def _(hidden, weight, targets, old_logp, ref_logp, advantages, mask, temperature, ignore_index, with_entropy,
      clip_low, clip_high, dual_clip, kl_type, kl_coef, agg, entropy_coef, max_len, backend, old_from_current=False):
    dt = torch_impl.compute_dtype(hidden.dtype)
    n = hidden.shape[0]
    return (hidden.new_empty(6, dtype=dt), hidden.new_empty(n, dtype=dt), hidden.new_empty(n, dtype=dt),
            torch.empty_like(hidden), torch.empty_like(weight))


def _setup(ctx, inputs, output):
    ctx.save_for_backward(output[3], output[4])


def _backward(ctx, g_out, _a, _b, _c, _d):
    gh, gw = ctx.saved_tensors
    s = g_out[0]
    return (gh * s.to(gh.dtype), gw * s.to(gw.dtype)) + (None,) * 18


linear_grpo_fwd.register_autograd(_backward, setup_context=_setup)


def linear_grpo_loss_with_backend(hidden, weight, targets, old_logp, ref_logp, advantages, mask, *,
                                  temperature=1.0, ignore_index=-100, with_entropy=True, clip_low=0.2,
                                  clip_high=0.2, dual_clip=None, kl_type="k3", kl_coef=0.0, agg="token-mean",
                                  entropy_coef=0.0, max_len=None, backend="auto"):
    """linear_grpo_loss with an explicit backend ("auto" | "triton" | "torch"). old_logp=None: the old
    log-probs are this pass's own (detached), as a learner whose old policy is the current one uses."""
    lop.check_inputs(hidden, weight, targets, temperature, ignore_index)
    cfg = GRPOConfig(clip_low, clip_high, dual_clip, kl_type, kl_coef, agg, entropy_coef, max_len)
    cfg.validate(has_ref=ref_logp is not None, has_entropy=with_entropy)
    if mask.dim() != 2 or mask.numel() != hidden.shape[0]:
        raise KernelInputError("mask", f"must be [B, T] with B*T = N = {hidden.shape[0]}, got {tuple(mask.shape)}")
    current = old_logp is None
    old_logp = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device) if current else old_logp
    grpo_op._check(old_logp, old_logp, ref_logp, advantages, mask, None)
    out, logp, ent, _, _ = linear_grpo_fwd(
        hidden, weight, targets, old_logp.detach(), None if ref_logp is None else ref_logp.detach(),
        advantages.detach(), mask.detach(), float(temperature), int(ignore_index), bool(with_entropy),
        float(clip_low), float(clip_high), float(dual_clip or 0.0), kl_type, float(kl_coef), agg,
        float(entropy_coef), int(max_len or 0), backend, current)
    stats = dict(zip(grpo_op.STAT_NAMES, out[1:].detach().unbind()))
    ent = ent.detach().view(mask.shape) if with_entropy else None
    # The loss as a tensor of its own, not a view of `out`: FSDP2 hooks a wrapped module's outputs for backward and
    # warns, on every step, about views (an in-place op on one would skip its hook).
    return out[0].clone(), stats, logp.detach().view(mask.shape), ent


def linear_grpo_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                     old_logp: Optional[torch.Tensor],
                     ref_logp: Optional[torch.Tensor], advantages: torch.Tensor, mask: torch.Tensor, *,
                     temperature: float = 1.0, ignore_index: int = -100, with_entropy: bool = True,
                     clip_low: float = 0.2, clip_high: float = 0.2, dual_clip: Optional[float] = None,
                     kl_type: str = "k3", kl_coef: float = 0.0, agg: str = "token-mean", entropy_coef: float = 0.0,
                     max_len: Optional[int] = None):
    """grpo_loss(linear_logprob(hidden, weight, targets)) in one pass. hidden [B*T, H], targets [B*T],
    old_logp/ref_logp/mask [B, T] (old_logp None: this pass's own, detached), advantages [B] or [B, T].
    Returns (loss, stats, logp [B, T],
    entropy [B, T] or None); loss is differentiable w.r.t. hidden and weight (gradients computed in
    the forward), logp and entropy are detached."""
    return linear_grpo_loss_with_backend(
        hidden, weight, targets, old_logp, ref_logp, advantages, mask, temperature=temperature,
        ignore_index=ignore_index, with_entropy=with_entropy, clip_low=clip_low, clip_high=clip_high,
        dual_clip=dual_clip, kl_type=kl_type, kl_coef=kl_coef, agg=agg, entropy_coef=entropy_coef,
        max_len=max_len)
