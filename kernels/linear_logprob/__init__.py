"""Fused linear log-prob + entropy: Triton kernels, the chunked PyTorch path (torch_impl.py), reference, autograd op."""
