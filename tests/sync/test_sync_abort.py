"""A sync group that cannot abort a stuck broadcast says so, and what happens instead."""
import logging
from datetime import timedelta

import torch

from engine.sync import free_port, init_sync_group
from engine.sync.group import SyncGroup


def test_gloo_group_says_it_cannot_abort(caplog):
    group = init_sync_group("127.0.0.1", free_port(), 0, 1, timeout_s=7)
    try:
        with caplog.at_level(logging.WARNING, logger="engine.sync.group"):
            assert group.abort() is False
        assert "gloo group has no abort" in caplog.text and "0:00:07" in caplog.text
    finally:
        group.close()


def test_nccl_group_without_abort_names_the_timeout_key(caplog):
    # A process-group object without abort(), as some torch builds' ProcessGroupNCCL: the abort cannot happen.
    group = SyncGroup(pg=None, rank=0, world_size=2, backend="nccl", device=torch.device("cpu"),
                      timeout=timedelta(seconds=30), store=None, impl=object())
    with caplog.at_level(logging.WARNING, logger="engine.sync.group"):
        assert group.abort() is False
    assert "ray.sync_timeout_s" in caplog.text and "0:00:30" in caplog.text


def test_nccl_group_with_abort_aborts():
    calls = []

    class Impl:
        def abort(self):
            calls.append("abort")

    group = SyncGroup(pg=None, rank=0, world_size=2, backend="nccl", device=torch.device("cpu"),
                      timeout=timedelta(seconds=30), store=None, impl=Impl())
    assert group.abort() is True and calls == ["abort"]
