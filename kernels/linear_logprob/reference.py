"""Plain PyTorch linear log-prob + entropy that materialises the [N, V] logits (the eager baseline)."""
from typing import Optional

import torch


def linear_logprob_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    ignore_index: int = -100,
    compute_dtype: Optional[torch.dtype] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log softmax(hidden @ weight.T / temperature)[targets] and the entropy, per row.

    compute_dtype=None is what eager user code does: the matmul runs in the input dtype (bf16 logits
    are rounded to bf16) and the softmax statistics in fp32. compute_dtype=torch.float64 upcasts
    the inputs first: that is the accuracy reference of the tests. Differentiable by autograd.
    Ignored rows get 0 and no gradient.
    """
    if compute_dtype is not None:
        hidden, weight = hidden.to(compute_dtype), weight.to(compute_dtype)
    logits = hidden @ weight.T
    stat_dtype = torch.promote_types(logits.dtype, torch.float32)
    logits = logits.to(stat_dtype) / temperature
    logq = torch.log_softmax(logits, dim=-1)
    keep = targets != ignore_index
    safe = torch.where(keep, targets, torch.zeros_like(targets))
    logp = logq.gather(1, safe[:, None]).squeeze(1)
    entropy = -(logq.exp() * logq).sum(-1)
    zero = torch.zeros((), dtype=stat_dtype, device=logp.device)
    return torch.where(keep, logp, zero), torch.where(keep, entropy, zero)
