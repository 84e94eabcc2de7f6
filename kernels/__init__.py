"""Fused Triton kernels for the GRPO learner (fused linear log-prob + entropy, fused GRPO loss + KL)."""
from kernels.errors import KernelInputError
from kernels.grpo_loss.op import grpo_loss
from kernels.linear_grpo.op import linear_grpo_loss
from kernels.linear_logprob.op import linear_logprob

__all__ = ["linear_logprob", "grpo_loss", "linear_grpo_loss", "KernelInputError"]
