"""Ctrl-C during training: the first one lets the current step finish and the run checkpoint; a second one exits now.

A terminal's Ctrl-C reaches the driver as SIGINT in the middle of a step, usually inside a blocking Ray call; raising
KeyboardInterrupt there would abandon the step, print a traceback through Ray and save nothing. Instead the handler
only records the request; the loop checks it between steps (`StopRequest.requested`) and ends the run with
`Interrupted`, after which the recipe writes a checkpoint and the CLI exits 130 with one line.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager


class Interrupted(Exception):
    """The run stopped at a user's request after `step` finished steps; `checkpoint` is where they were saved."""

    def __init__(self, step: int, checkpoint: str | None = None):
        self.step, self.checkpoint = step, checkpoint
        super().__init__(f"interrupted at step {step}")


class StopRequest:
    def __init__(self) -> None:
        self.requested = False


@contextmanager
def stop_on_interrupt(log=print):
    """Within the block, SIGINT sets `.requested` (the first time) or exits the process at once with 130 (the
    second). Outside the main thread, where no handler can be set, Ctrl-C keeps its default behaviour."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            print("\nvthink: second interrupt: exiting now, without a checkpoint", file=sys.stderr, flush=True)
            os._exit(130)
        stop.requested = True
        log("interrupt: finishing this step, then saving a checkpoint (Ctrl-C again to exit at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def resume_command(run_config: str) -> str:
    """The command that continues a run from its checkpoint: its own resolved config (the run folder's
    config.json, which any command that trains writes), so it holds for `vthink train` and a demo's GRPO stage
    alike."""
    return f"vthink train {run_config} --resume"
