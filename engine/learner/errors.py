"""Typed errors of the learner: a malformed training batch, an unusable checkpoint."""
from engine.errors import VthinkError


class LearnerBatchError(VthinkError, ValueError):
    """A batch handed to the learner is inconsistent (missing key, wrong shape, visual inputs that don't match)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"batch[{key!r}]: {message}")


class CheckpointError(VthinkError):
    """A checkpoint directory is missing, incomplete or does not fit this learner."""
