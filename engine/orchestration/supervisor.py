"""Restarts after an infrastructure fault: which failures are worth a restart, and how often to checkpoint for one.

A learner rank killed by the OOM killer, a preempted node or a broken collective ends a step with a Ray error.
`train` (engine/recipes/grpo.py) then tears every actor down, starts them again, resumes from the newest complete
checkpoint and goes on, at most `trainer.max_restarts` times. A rollout worker that dies is already replaced by
the cluster itself without a restart (orchestration/cluster.py); what reaches here is what that cannot absorb.
Errors in the data, the config or the code (vthink's own errors, a TypeError in a reward function) would fail the
same way again, so they are never retried.
"""
from __future__ import annotations

import re

from ray.exceptions import ActorUnavailableError, GetTimeoutError, OutOfMemoryError, RayActorError, RayTaskError

from engine.errors import ClusterFailure, VthinkError, WeightSyncError

# What a broken collective or a lost peer says, from gloo, NCCL and torch.distributed's store.
_COLLECTIVE = re.compile(r"gloo|nccl|connection (closed|reset|refused)|broken pipe|timed? ?out|peer|"
                         r"store|out of memory", re.I)
DEFAULT_INTERVALS = 10  # with max_restarts and no checkpoint_every: about ten checkpoints a run


def infrastructure_failure(error: BaseException) -> str | None:
    """Why `error` is worth a restart (one line), or None when it would fail the same way again."""
    if isinstance(error, (RayActorError, ActorUnavailableError)):
        if getattr(error, "actor_init_failed", False):
            return None  # raised by the actor's constructor (a path this node cannot read): it would again
        return f"{type(error).__name__}: {_first_line(getattr(error, 'error_msg', None) or str(error))}"
    if isinstance(error, (OutOfMemoryError, GetTimeoutError)):
        return f"{type(error).__name__}: {_first_line(str(error))}"
    if isinstance(error, RayTaskError):
        cause = error.cause
        if isinstance(cause, WeightSyncError):  # a sync timeout or a corrupted bucket: the transport, not the run
            return f"{type(cause).__name__}: {_first_line(str(cause))}"
        if isinstance(cause, VthinkError) or cause is None:
            return None
        if isinstance(cause, RayTaskError | RayActorError | ActorUnavailableError):
            return infrastructure_failure(cause)
        name = type(cause).__name__
        if name in ("OutOfMemoryError", "DistBackendError", "DistNetworkError", "DistStoreError") or (
                isinstance(cause, RuntimeError) and _COLLECTIVE.search(str(cause))):
            return f"{name}: {_first_line(str(cause))}"
    return None


class Restarts:
    """One phase's restart budget (trainer.max_restarts): GRPO's loop and SFT's hand it each failure."""

    def __init__(self, limit: int, log, prefix: str = ""):
        self.limit, self.used, self.log, self.prefix = limit, 0, log, prefix  # prefix: "sft: " for SFT's lines

    def take(self, error: Exception, cluster, newest, resume_with: str | None) -> str:
        """Count a restart after `error` and tear `cluster` down: returns "<who> died: <why>" (also logged). Re-raises
        `error` when a restart would fail the same way; ClusterFailure, naming `newest` (checkpoint or None) and
        the command that continues, when no restart is left."""
        why = infrastructure_failure(error)
        if why is None:
            raise error  # the data, the config or the code: it would fail the same way again
        who = (", ".join(cluster.dead()) if cluster is not None else "") or "an actor"
        if self.used >= self.limit:
            after = ("No checkpoint was written." if newest is None else f"The newest checkpoint is {newest}"
                     + (f"; continue with: {resume_with}" if resume_with else "."))
            raise ClusterFailure(f"{self.prefix}{who} died: {why}; no restart left ({self.used} of "
                                 f"trainer.max_restarts={self.limit} used). {after}") from error
        self.used += 1
        self.log(f"{self.prefix}{who} died: {why}; starting every actor again (restart {self.used}/{self.limit})")
        if cluster is not None:
            cluster.shutdown(keep_ray=True)  # every actor: the survivors' process groups hold the dead peer
        return f"{who} died: {why}"


def checkpoint_interval(steps: int, checkpoint_every: int, max_restarts: int) -> int:
    """trainer.checkpoint_every, or, when it is 0 and restarts are allowed, one that loses at most a tenth of the
    run to a restart (a restart resumes from the newest checkpoint)."""
    if checkpoint_every or not max_restarts:
        return checkpoint_every
    return max(1, steps // DEFAULT_INTERVALS)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""
