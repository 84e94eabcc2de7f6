"""Typed input errors raised by the kernels package (which knows nothing of engine/)."""


class KernelInputError(ValueError):
    """A kernel was called with a bad argument; the message names the argument and what was wrong."""

    def __init__(self, arg: str, message: str) -> None:
        super().__init__(f"{arg}: {message}")
        self.arg = arg
