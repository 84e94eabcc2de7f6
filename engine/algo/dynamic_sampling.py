"""Dynamic sampling (DAPO): drop groups whose rewards are all equal and refill the batch with fresh prompts.

A zero-variance group has zero advantage for every sample under GRPO and Dr.GRPO alike, so it only
dilutes the gradient; replacing it keeps the number of informative groups per step constant. Works on
any per-sample items (the rollout's Samples) laid out group by group, so algo/ needs no rollout types.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import torch

T = TypeVar("T")


def informative_groups(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Bool [num_groups]: True where a group's rewards are not all equal (max - min > eps)."""
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, got {tuple(rewards.shape)}")
    r = rewards.view(-1, group_size)
    return (r.amax(dim=1) - r.amin(dim=1)) > eps


def split_groups(items: Sequence[T], rewards: torch.Tensor, group_size: int, eps: float = 1e-6
                 ) -> tuple[list[list[T]], list[list[T]]]:
    """(informative groups, zero-variance groups), each a list of `group_size` items in order."""
    if len(items) != rewards.numel():
        raise ValueError(f"{len(items)} items but {rewards.numel()} rewards")
    keep = informative_groups(rewards, group_size, eps).tolist()
    groups = [list(items[k * group_size : (k + 1) * group_size]) for k in range(len(keep))]
    return [g for g, ok in zip(groups, keep) if ok], [g for g, ok in zip(groups, keep) if not ok]


@dataclass
class FillStats:
    rounds: int = 0  # calls to the sampler
    groups_drawn: int = 0
    groups_dropped: int = 0


def fill_informative(draw: Callable[[int], tuple[Sequence[T], torch.Tensor]], group_size: int, target_groups: int,
                     max_rounds: int, eps: float = 1e-6) -> tuple[list[list[T]], FillStats]:
    """Call `draw(k)` -> (items of k fresh groups, their rewards) until `target_groups` informative groups
    are collected or `max_rounds` draws were made. Returns at most target_groups groups — possibly
    fewer, even none: the caller decides whether to skip the step."""
    if target_groups < 1 or max_rounds < 1:
        raise ValueError(f"target_groups and max_rounds must be >= 1, got {target_groups}, {max_rounds}")
    stats, kept = FillStats(), []
    while stats.rounds < max_rounds and len(kept) < target_groups:
        items, rewards = draw(target_groups - len(kept))
        stats.rounds += 1
        good, bad = split_groups(items, rewards, group_size, eps)
        stats.groups_drawn += len(good) + len(bad)
        stats.groups_dropped += len(bad)
        kept.extend(good)
    return kept[:target_groups], stats
