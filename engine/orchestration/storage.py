"""The storage contract of a run, checked by every actor on its own node before it does any work.

Rows, samples and weights travel through Ray; files do not. Learners write checkpoints and `sft/` into
trainer.output_dir and the driver reads them back; every actor loads model.path; rollout workers open the videos
by the paths the driver read. So each of those must be the same path on every node (README, "Running on a
cluster"). Without this check a node that cannot see them fails late and far from the cause — a missing video
fails prompts one by one, an unwritable output folder fails the first checkpoint.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from engine.errors import StorageError
from engine.model.loading import READER, TINY_NAMES

MAX_VIDEOS_PROBED = 64  # one video per folder, at most this many: a folder mounted elsewhere shows in its first file


def model_paths(model_path: str | None) -> list[Path]:
    """model.path when it names a folder; the embedded models are built on each node, nothing to share."""
    return [] if model_path in TINY_NAMES or model_path == READER else [Path(model_path)]


def video_probe(paths) -> list[Path]:
    """One video per distinct folder among `paths`, at most MAX_VIDEOS_PROBED, in a stable order."""
    first: dict[Path, Path] = {}
    for p in sorted(map(Path, paths)):
        first.setdefault(p.parent, p)
    return list(first.values())[:MAX_VIDEOS_PROBED]


def check_storage(who: str, node: str, read: list[Path] = (), write: list[Path] = ()) -> None:
    """Raise StorageError naming every path of `read` this process cannot read and of `write` it cannot write into."""
    problems = []
    for p in read:
        if not p.exists():
            problems.append(f"{p} does not exist")
        elif not os.access(p, os.R_OK):
            problems.append(f"{p} is not readable")
    for d in write:
        probe = d / f".vthink-write-check-{uuid.uuid4().hex}"
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            problems.append(f"{d} is not writable ({e.strerror or e})")
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise StorageError(f"{who} on node {node}: {shown}. Every node must see trainer.output_dir, model.path and "
                           f"the videos at the same paths (README: Running on a cluster)")
