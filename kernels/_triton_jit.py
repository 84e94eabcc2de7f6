"""Builds Triton kernels lazily, as compiled or interpreted functions depending on TRITON_INTERPRET.

`triton.jit` decides compile-vs-interpret when a module is imported; our modules may be imported
before a test sets TRITON_INTERPRET=1, so kernels are wrapped at first launch instead.
"""
import functools
from typing import Callable

import triton
from triton.runtime.interpreter import InterpretedFunction

from kernels._backend import interpreting


@functools.cache
def _wrap(fn: Callable, interpret: bool):
    # cached so the compiled kernel (and Triton's own binary cache) lives as long as the process
    return InterpretedFunction(fn) if interpret else triton.jit(fn)


def kernel(fn: Callable):
    """The launchable kernel for `fn` in the current mode."""
    return _wrap(fn, interpreting())
