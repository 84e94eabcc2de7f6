"""The vision tower's embeddings of a list of images/videos, each distinct item encoded once.

Both the learner (a group's G samples repeat their prompt video) and the transformers rollout backend (a
group's first turn, and G samples zooming into the same window) hand the tower batches with repeats.
"""
from __future__ import annotations

import torch


def encode_distinct(visual, pixels: torch.Tensor, grids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(merged embeddings of every item in `grids`, in order; how many items the tower actually ran on).

    Items attend only within themselves, so encoding a repeat alone gives its representative's rows: each
    repeat gets those rows, and under autograd a shared item's gradient is the sum over its repeats, exactly
    as if each had been encoded.
    """
    merge = visual.spatial_merge_size
    sizes = grids.prod(-1).tolist()
    items = list(torch.split(pixels, sizes))
    keys = [tuple(g) for g in grids.tolist()]
    first: list[int] = []  # index of each item's representative
    unique: list[int] = []
    for i, (x, key) in enumerate(zip(items, keys)):
        rep = next((j for j in unique if keys[j] == key and (items[j] is x or torch.equal(items[j], x))), None)
        if rep is None:
            unique.append(i)
            rep = i
        first.append(rep)
    if len(unique) == len(items):
        return visual(pixels, grid_thw=grids).pooler_output, len(items)
    embeds = visual(torch.cat([items[j] for j in unique]), grid_thw=grids[unique]).pooler_output
    rows = [n // (merge * merge) for n in sizes]
    offset, start = {}, 0
    for j in unique:
        offset[j] = start
        start += rows[j]
    index = torch.cat([torch.arange(offset[r], offset[r] + rows[i], device=embeds.device)
                       for i, r in enumerate(first)])
    return embeds.index_select(0, index), len(unique)
