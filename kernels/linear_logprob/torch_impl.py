"""Chunked PyTorch linear log-prob + entropy (the CPU path): token chunks, never the full [N, V] logits.

Each chunk of rows gets its logits in the compute dtype (fp32 for half inputs, else the input
dtype), its statistics, and on the backward its dlogits; the gradient GEMMs run per chunk and the
weight gradient is accumulated in the compute dtype. Rows of a chunk are the same rows whatever
called it (chunks always start at multiples of `chunk_rows`), so the no-grad pass, the grad pass
and the loss-in-forward pass give bit-identical log-probs.
"""
from typing import Callable, Optional

import torch

# dlogits callback of the loss-in-forward path: (row0, row1, logp, entropy) -> (dL/dlogp, dL/dentropy or None)
GradFn = Callable[[int, int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor]]]

CHUNK_BYTES = 8 * 2**20  # one fp32 chunk of logits: near cache-sized, keeps the peak RSS low


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def chunk_rows(vocab: int) -> int:
    """Rows per chunk: a function of V only, so every pass chunks the same rows the same way."""
    return max(8, min(4096, CHUNK_BYTES // (4 * vocab)) // 8 * 8)


def _chunk_stats(z: torch.Tensor, tgt: torch.Tensor, keep: torch.Tensor, temperature: float, with_entropy: bool):
    """From raw chunk logits z (overwritten) to (logp, entropy, (max, log_s), logq).

    logq = (z - max) - log_s as log_softmax computes it: z - max is exact near the max while
    max + log_s (the lse) is rounded, which would cost peaked rows their accuracy.
    """
    if temperature != 1.0:
        z.div_(temperature)
    mx = z.amax(-1)
    z.sub_(mx[:, None])
    log_s = z.exp().sum(-1).log_()
    logq = z.sub_(log_s[:, None])  # in place: log-probabilities of the chunk
    lse = torch.stack([mx, log_s])
    logp = logq.gather(1, tgt[:, None]).squeeze(1)
    if with_entropy:
        ent = -(logq.exp() * logq).sum(-1)
    else:
        ent = torch.zeros_like(logp)
    zero = torch.zeros((), dtype=logp.dtype)
    return torch.where(keep, logp, zero), torch.where(keep, ent, zero), lse, logq


def _dlogits(logq: torch.Tensor, tgt: torch.Tensor, keep: torch.Tensor, ent: torch.Tensor,
             g_logp: torch.Tensor, g_ent: Optional[torch.Tensor], temperature: float) -> torch.Tensor:
    """dL/dlogits in place of logq.

    With q = softmax(z), z = logits / T:  d logp_t / dz_j = [j == t] - q_j and
    d H / dz_j = -q_j (log q_j + H), so dL/dz_j = -q_j (g_logp + g_ent (log q_j + H)) + [j == t] g_logp.
    """
    zero = torch.zeros((), dtype=logq.dtype)
    gl = torch.where(keep, g_logp.to(logq.dtype), zero)
    p = logq.exp()
    if g_ent is not None:
        ge = torch.where(keep, g_ent.to(logq.dtype), zero)
        logq.add_(ent[:, None]).mul_(ge[:, None]).add_(gl[:, None]).mul_(p).neg_()
    else:
        logq = p.mul_(-gl[:, None])
    logq.scatter_add_(1, tgt[:, None], gl[:, None])
    if temperature != 1.0:
        logq.div_(temperature)
    return logq


def _prepare(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int):
    cdt = compute_dtype(hidden.dtype)
    w = weight.to(cdt)  # one upcast of the weight, not one per chunk
    keep = targets != ignore_index
    tgt = torch.where(keep, targets, torch.zeros_like(targets))
    return cdt, w, keep, tgt


def forward(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float,
            ignore_index: int, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logp, entropy, lse) in fp32 (fp64 for fp64 inputs); entropy is zeros when not asked for;
    lse is [2, N]: (row max, log sum exp(z - max))."""
    n, v = hidden.shape[0], weight.shape[0]
    cdt, w, keep, tgt = _prepare(hidden, weight, targets, ignore_index)
    logp = torch.empty(n, dtype=cdt)
    ent = torch.empty(n, dtype=cdt)
    lse = torch.empty(2, n, dtype=cdt)  # (row max, log sum exp(z - max))
    step = chunk_rows(v)
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        z = hidden[r0:r1].to(cdt) @ w.T
        logp[r0:r1], ent[r0:r1], lse[:, r0:r1], _ = _chunk_stats(z, tgt[r0:r1], keep[r0:r1], temperature, with_entropy)
    return logp, ent, lse


def backward(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor,
             ent: torch.Tensor, g_logp: torch.Tensor, g_ent: Optional[torch.Tensor], temperature: float,
             ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_hidden, grad_weight) by recomputing each chunk's logits (4 GEMMs in all with the forward)."""
    n, v = hidden.shape[0], weight.shape[0]
    cdt, w, keep, tgt = _prepare(hidden, weight, targets, ignore_index)
    grad_h = torch.empty(hidden.shape, dtype=hidden.dtype)
    grad_w = torch.zeros(w.shape, dtype=cdt)
    step = chunk_rows(v)
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        h = hidden[r0:r1].to(cdt)
        logq = (h @ w.T)
        if temperature != 1.0:
            logq.div_(temperature)
        logq.sub_(lse[0, r0:r1, None]).sub_(lse[1, r0:r1, None])
        ge = None if g_ent is None else g_ent[r0:r1]
        dz = _dlogits(logq, tgt[r0:r1], keep[r0:r1], ent[r0:r1], g_logp[r0:r1], ge, temperature)
        grad_h[r0:r1] = dz @ w
        grad_w.addmm_(dz.T, h)
    return grad_h, grad_w.to(weight.dtype)


def forward_backward(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float,
                     ignore_index: int, with_entropy: bool, grad_fn: GradFn):
    """Loss-in-forward: per chunk, stats -> grad_fn gives dL/dlogp -> dlogits from the same logits -> grads.

    3 GEMMs in all (no recomputation). Returns (logp, entropy, grad_hidden, grad_weight).
    """
    n, v = hidden.shape[0], weight.shape[0]
    cdt, w, keep, tgt = _prepare(hidden, weight, targets, ignore_index)
    logp = torch.empty(n, dtype=cdt)
    ent = torch.empty(n, dtype=cdt)
    grad_h = torch.empty(hidden.shape, dtype=hidden.dtype)
    grad_w = torch.zeros(w.shape, dtype=cdt)
    step = chunk_rows(v)
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        h = hidden[r0:r1].to(cdt)
        z = h @ w.T
        lp, en, _, logq = _chunk_stats(z, tgt[r0:r1], keep[r0:r1], temperature, with_entropy)
        logp[r0:r1], ent[r0:r1] = lp, en
        gl, ge = grad_fn(r0, r1, lp, en)
        dz = _dlogits(logq, tgt[r0:r1], keep[r0:r1], en, gl, ge, temperature)
        grad_h[r0:r1] = dz @ w
        grad_w.addmm_(dz.T, h)
    return logp, ent, grad_h, grad_w.to(weight.dtype)
