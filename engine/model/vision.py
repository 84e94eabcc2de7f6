"""The vision tower's embeddings of a list of images/videos, each distinct item encoded once.

Both the learner (a group's G samples repeat their prompt video) and the transformers rollout backend (a
group's first turn, and G samples zooming into the same window) hand the tower batches with repeats.
Qwen3-VL's tower also returns DeepStack features (one [tokens, width] map per chosen vision layer, added to
early text layers at the visual positions); they follow the same rows.
"""
from __future__ import annotations

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling


def encode_distinct(visual, pixels: torch.Tensor, grids: torch.Tensor
                    ) -> tuple[torch.Tensor, list[torch.Tensor] | None, int]:
    """(merged embeddings of every item in `grids`, in order; DeepStack features the same way, or None for a
    tower without them; how many items the tower actually ran on).

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
        rep = next((j for j in unique if keys[j] == key and torch.equal(items[j], x)), None)
        if rep is None:
            unique.append(i)
            rep = i
        first.append(rep)
    if len(unique) == len(items):
        out = visual(pixels, grid_thw=grids)
        return out.pooler_output, _deepstack(out), len(items)
    out = visual(torch.cat([items[j] for j in unique]), grid_thw=grids[unique])
    rows = [n // (merge * merge) for n in sizes]
    offset, start = {}, 0
    for j in unique:
        offset[j] = start
        start += rows[j]
    index = torch.cat([torch.arange(offset[r], offset[r] + rows[i], device=pixels.device)
                       for i, r in enumerate(first)])
    deep = _deepstack(out)
    if deep is not None:
        deep = [d.index_select(0, index) for d in deep]
    return out.pooler_output.index_select(0, index), deep, len(unique)


def _deepstack(out) -> list[torch.Tensor] | None:
    return getattr(out, "deepstack_features", None)


def encoder_output(embeds: torch.Tensor, deepstack: list[torch.Tensor] | None) -> BaseModelOutputWithPooling:
    """One `mm_encoder_outputs` entry, as either architecture's text model reads it."""
    if deepstack is None:
        return BaseModelOutputWithPooling(pooler_output=(embeds,))
    from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

    return BaseModelOutputWithDeepstackFeatures(pooler_output=(embeds,), deepstack_features=[(d,) for d in deepstack])
