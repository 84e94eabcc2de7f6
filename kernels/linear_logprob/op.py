"""linear_logprob: fused last-layer log-prob + entropy as torch custom ops with autograd.

Forward returns (logp, entropy, lse); the backward op recomputes logits tile by tile from the
saved lse/entropy. CUDA tensors run the Triton kernels, CPU tensors the chunked PyTorch path.
"""
from typing import Optional

import torch

from kernels._backend import resolve
from kernels.errors import KernelInputError
from kernels.linear_logprob import torch_impl
from kernels.linear_logprob import triton as lt


def _out_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch_impl.compute_dtype(dtype)


@torch.library.custom_op("vthink::linear_logprob_fwd", mutates_args=())
def linear_logprob_fwd(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float,
                       ignore_index: int, with_entropy: bool, backend: str
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if resolve(hidden.device, backend) == "triton":
        return lt.forward(hidden, weight, targets, temperature, ignore_index)
    return torch_impl.forward(hidden, weight, targets, temperature, ignore_index, with_entropy)


@linear_logprob_fwd.register_fake
def _(hidden, weight, targets, temperature, ignore_index, with_entropy, backend):
    n = hidden.shape[0]
    dt = _out_dtype(hidden.dtype)
    return hidden.new_empty(n, dtype=dt), hidden.new_empty(n, dtype=dt), hidden.new_empty(2, n, dtype=dt)


@torch.library.custom_op("vthink::linear_logprob_bwd", mutates_args=())
def linear_logprob_bwd(g_logp: torch.Tensor, g_ent: Optional[torch.Tensor], hidden: torch.Tensor,
                       weight: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, entropy: torch.Tensor,
                       temperature: float, ignore_index: int, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if resolve(hidden.device, backend) == "triton":
        return lt.backward(hidden, weight, targets, lse, entropy, g_logp, g_ent, temperature, ignore_index)
    return torch_impl.backward(hidden, weight, targets, lse, entropy, g_logp, g_ent, temperature, ignore_index)


@linear_logprob_bwd.register_fake
def _(g_logp, g_ent, hidden, weight, targets, lse, entropy, temperature, ignore_index, backend):
    return torch.empty_like(hidden), torch.empty_like(weight)


def _setup(ctx, inputs, output):
    hidden, weight, targets, temperature, ignore_index, with_entropy, backend = inputs
    _, ent, lse = output
    ctx.save_for_backward(hidden, weight, targets, lse, ent)
    ctx.args = (temperature, ignore_index, with_entropy, backend)


def _backward(ctx, g_logp, g_ent, _g_lse):
    hidden, weight, targets, lse, ent = ctx.saved_tensors
    temperature, ignore_index, with_entropy, backend = ctx.args
    gh, gw = linear_logprob_bwd(g_logp.contiguous(), g_ent.contiguous() if with_entropy else None,
                                hidden, weight, targets, lse, ent, temperature, ignore_index, backend)
    return gh, gw, None, None, None, None, None


linear_logprob_fwd.register_autograd(_backward, setup_context=_setup)


def check_inputs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float,
                 ignore_index: int) -> None:
    if hidden.dim() != 2:
        raise KernelInputError("hidden", f"must be [N, H], got shape {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[1]:
        raise KernelInputError("weight", f"must be [V, {hidden.shape[1]}], got shape {tuple(weight.shape)}")
    if hidden.dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        raise KernelInputError("hidden", f"must be fp32/bf16/fp16, got {hidden.dtype}")
    if weight.dtype != hidden.dtype:
        raise KernelInputError("weight", f"dtype {weight.dtype} differs from hidden's {hidden.dtype}")
    if targets.dim() != 1 or targets.shape[0] != hidden.shape[0] or targets.dtype != torch.int64:
        raise KernelInputError("targets", f"must be int64 [{hidden.shape[0]}], got {targets.dtype} "
                               f"{tuple(targets.shape)}")
    if weight.device != hidden.device or targets.device != hidden.device:
        raise KernelInputError("weight/targets", "must be on hidden's device")
    if not temperature > 0:
        raise KernelInputError("temperature", f"must be > 0, got {temperature}")
    # a range check on CUDA would be a host sync, and under torch.compile a data-dependent branch
    if hidden.device.type == "cpu" and targets.numel() and not torch.compiler.is_compiling():
        bad = (targets != ignore_index) & ((targets < 0) | (targets >= weight.shape[0]))
        if bool(bad.any()):
            raise KernelInputError("targets", f"values must be in [0, {weight.shape[0]}) or ignore_index")


def linear_logprob_with_backend(hidden, weight, targets, *, temperature=1.0, with_entropy=True,
                                ignore_index=-100, backend="auto"):
    """linear_logprob with an explicit backend ("auto" | "triton" | "torch")."""
    check_inputs(hidden, weight, targets, temperature, ignore_index)
    if resolve(hidden.device, backend) == "triton" and hidden.dtype == torch.float64:
        raise KernelInputError("hidden", "float64 is only supported by the torch backend")
    logp, ent, _ = linear_logprob_fwd(hidden, weight, targets, float(temperature), int(ignore_index),
                                      bool(with_entropy), backend)
    return logp, (ent if with_entropy else None)


def linear_logprob(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, temperature: float = 1.0,
                   with_entropy: bool = True, ignore_index: int = -100
                   ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """log softmax(hidden @ weight.T / temperature)[targets] and its entropy, fp32 [N] each.

    hidden [N, H] bf16/fp16/fp32, weight [V, H] same dtype, targets [N] int64. The [N, V] logits are
    never materialised. Rows with target == ignore_index get 0 and no gradient. entropy is None when
    with_entropy=False. Differentiable w.r.t. hidden and weight through both outputs.
    """
    return linear_logprob_with_backend(hidden, weight, targets, temperature=temperature,
                                       with_entropy=with_entropy, ignore_index=ignore_index)
