"""Fused GRPO loss + KL + entropy bonus: Triton kernels, PyTorch path, verl-semantics reference, op."""
