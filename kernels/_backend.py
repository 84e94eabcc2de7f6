"""Backend choice for every kernel: CUDA tensors -> Triton, CPU tensors -> chunked PyTorch."""
import os

import torch

from kernels.errors import KernelInputError

KERNEL_BACKENDS = ("auto", "triton", "torch")


def interpreting() -> bool:
    """True when Triton runs in its CPU interpreter (TRITON_INTERPRET=1), read at call time."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve(device: torch.device, backend: str) -> str:
    """Map (tensor device, requested backend) to "triton" or "torch".

    "auto": CUDA -> triton, anything else -> torch. "triton" on a CPU tensor is only allowed under
    TRITON_INTERPRET=1 (that is how the CI tests exercise the Triton code without a GPU).
    """
    if backend not in KERNEL_BACKENDS:
        raise KernelInputError("backend", f"must be one of {KERNEL_BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" else "torch"
    if backend == "triton" and device.type != "cuda" and not interpreting():
        raise KernelInputError("backend", "triton on a non-CUDA tensor needs TRITON_INTERPRET=1")
    return backend
