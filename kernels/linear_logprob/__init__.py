"""Fused linear log-prob + entropy: Triton kernels, chunked PyTorch path, reference, autograd op."""
