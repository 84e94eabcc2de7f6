"""Splits a training batch into token-balanced per-rank shards and token-budgeted micro-batches.

A batch is a dict of tensors with B rows (engine/learner/batch.py: learner_batch's layout):
  * per-row tensors: shape [B, ...]: input_ids, attention_mask, loss_mask, rollout_logp, mm_token_type_ids,
    advantages ([B] or [B, L]) and anything else whose first dimension is B; those with a second dimension
    of L (the padded length) are sequence tensors and get trimmed with the rows;
  * position_ids [3, B, L] (M-RoPE ids), when present;
  * visual inputs, concatenated over the batch in row order (the order get_rope_index consumes them):
    videos: pixel_values_videos [sum t*h*w, D], video_grid_thw [n, 3], second_per_grid_ts [n];
    images: pixel_values [sum t*h*w, D], image_grid_thw [n, 3].
Which row owns which video: row b holds as many consecutive videos as it takes for their
t*h*w / merge**2 tokens to add up to the number of its attended tokens with mm_token_type_ids == 2 (images
alike with type 1). An explicit per-row count may be given instead as `video_counts` / `image_counts`
(int [B]); it is checked against the same token sums. A row may hold any number of videos, including none.

Costs count every token of the sequence (text plus the visual tokens it holds), i.e. attention_mask.sum(1).
Shards come from engine.native.balanced_partition (Karmarkar-Karp, csrc or the identical Python fallback),
micro-batches from engine.native.pack_by_budget (first-fit decreasing). Every rank computes the same plan
from the same full batch, so no communication is needed to agree on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine import native
from engine.learner.errors import LearnerBatchError


@dataclass(frozen=True)
class Modality:
    pixels: str  # patches [sum t*h*w, D]
    grid: str  # [n, 3]
    per_item: tuple[str, ...]  # other tensors with one entry per item
    token_type: int  # value in mm_token_type_ids
    counts: str  # optional explicit items-per-row key


MODALITIES = (
    Modality("pixel_values_videos", "video_grid_thw", ("second_per_grid_ts",), 2, "video_counts"),
    Modality("pixel_values", "image_grid_thw", (), 1, "image_counts"),
)
VISUAL_KEYS = frozenset(k for m in MODALITIES for k in (m.pixels, m.grid, *m.per_item))


@dataclass(frozen=True)
class VisualIndex:
    """Where each row's items of one modality live: item range per row and patch range per item."""

    first_item: list[int]  # [B]
    num_items: list[int]  # [B]
    patch_offsets: list[int]  # [n + 1] cumulative t*h*w


@dataclass(frozen=True)
class BatchLayout:
    """What planning and slicing need to know about a batch, computed once."""

    size: int
    length: int
    tokens: list[int]  # per row: attended tokens, text + visual
    ends: list[int]  # per row: one past the last attended column (the trimmed length)
    visual: dict[str, VisualIndex]  # pixels key -> index, for modalities present in the batch

    @property
    def has_visual(self) -> bool:
        return bool(self.visual)


def _need(batch: dict, key: str) -> torch.Tensor:
    if key not in batch:
        raise LearnerBatchError(key, "is missing")
    x = batch[key]
    if not isinstance(x, torch.Tensor):
        raise LearnerBatchError(key, f"must be a tensor, got {type(x).__name__}")
    return x


def _visual_index(batch: dict, m: Modality, merge: int, types: torch.Tensor, mask: torch.Tensor) -> VisualIndex:
    pixels, grid = _need(batch, m.pixels), _need(batch, m.grid)
    if grid.dim() != 2 or grid.shape[1] != 3 or grid.dtype.is_floating_point:
        raise LearnerBatchError(m.grid, f"must be integer [n, 3], got {grid.dtype} {tuple(grid.shape)}")
    n = grid.shape[0]
    for key in m.per_item:
        if key in batch and batch[key].shape[0] != n:
            raise LearnerBatchError(key, f"has {batch[key].shape[0]} entries but {m.grid} has {n} rows")
    g = grid.tolist()
    patches = [t * h * w for t, h, w in g]
    if any(min(r) <= 0 or r[1] % merge or r[2] % merge for r in g):
        raise LearnerBatchError(m.grid, f"rows must be positive with h, w multiples of merge size {merge}, got {g}")
    if pixels.dim() != 2 or pixels.shape[0] != sum(patches):
        raise LearnerBatchError(m.pixels, f"must be [{sum(patches)}, D] for {m.grid} {g}, got {tuple(pixels.shape)}")
    item_tokens = [p // (merge * merge) for p in patches]
    row_tokens = ((types == m.token_type) & mask).sum(1).tolist()
    B = len(row_tokens)
    if m.counts in batch:
        counts = _need(batch, m.counts).tolist()
        if len(counts) != B or sum(counts) != n or min(counts, default=0) < 0:
            raise LearnerBatchError(m.counts, f"must be {B} non-negative counts summing to {n}, got {counts}")
    else:
        counts, item = [], 0
        for b, need in enumerate(row_tokens):
            c, got = 0, 0
            while got < need and item + c < n:
                got += item_tokens[item + c]
                c += 1
            counts.append(c)
            item += c
    first, item = [], 0
    for b, c in enumerate(counts):
        if sum(item_tokens[item:item + c]) != row_tokens[b]:
            raise LearnerBatchError(
                m.grid, f"row {b} has {row_tokens[b]} tokens of type {m.token_type} but its {c} item(s) "
                        f"{g[item:item + c]} need {sum(item_tokens[item:item + c])}")
        first.append(item)
        item += c
    if item != n:
        raise LearnerBatchError(m.grid, f"has {n} rows but the batch's tokens of type {m.token_type} use {item}")
    offsets = [0]
    for p in patches:
        offsets.append(offsets[-1] + p)
    return VisualIndex(first, counts, offsets)


def layout(batch: dict, merge_size: int) -> BatchLayout:
    """Check the batch's shapes and index its rows' visual inputs (see the module docstring)."""
    ids = _need(batch, "input_ids")
    if ids.dim() != 2 or ids.dtype.is_floating_point or ids.shape[0] == 0:
        raise LearnerBatchError("input_ids", f"must be a non-empty integer [B, L], got {ids.dtype} {tuple(ids.shape)}")
    B, L = ids.shape
    mask = _need(batch, "attention_mask")
    if tuple(mask.shape) != (B, L):
        raise LearnerBatchError("attention_mask", f"must have input_ids' shape {(B, L)}, got {tuple(mask.shape)}")
    mask = mask != 0
    for key, x in batch.items():
        if key in VISUAL_KEYS or key == "position_ids":
            continue
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] != B:
            raise LearnerBatchError(key, f"per-row entries must be tensors with {B} rows, got "
                                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if "position_ids" in batch and tuple(batch["position_ids"].shape) != (3, B, L):
        raise LearnerBatchError("position_ids", f"must be [3, {B}, {L}], got {tuple(batch['position_ids'].shape)}")
    tokens = mask.sum(1).tolist()
    cols = torch.arange(1, L + 1).expand(B, L)
    ends = (cols * mask).amax(1).tolist()
    visual = {}
    for m in MODALITIES:
        if m.pixels in batch or m.grid in batch:
            types = _need(batch, "mm_token_type_ids")
            visual[m.pixels] = _visual_index(batch, m, merge_size, types, mask)
    return BatchLayout(B, L, tokens, ends, visual)


def select(batch: dict, lay: BatchLayout, rows: list[int]) -> dict:
    """The sub-batch of `rows` (in that order), trimmed to its longest attended row, with its visual inputs."""
    if not rows:
        raise LearnerBatchError("rows", "a sub-batch needs at least one row")
    idx = torch.tensor(rows, dtype=torch.long)
    length = max(lay.ends[r] for r in rows)
    out = {}
    for key, x in batch.items():
        if key in VISUAL_KEYS:
            continue
        if key == "position_ids":
            out[key] = x[:, idx, :length]
        elif x.dim() >= 2 and x.shape[1] == lay.length:
            out[key] = x[idx, :length]
        else:
            out[key] = x[idx]
    for m in MODALITIES:
        if m.pixels not in lay.visual:
            continue
        vi = lay.visual[m.pixels]
        items = [i for r in rows for i in range(vi.first_item[r], vi.first_item[r] + vi.num_items[r])]
        if not items:
            continue  # no row here has this modality: leave its keys out, as a processor would
        item_idx = torch.tensor(items, dtype=torch.long)
        patch_idx = torch.cat([torch.arange(vi.patch_offsets[i], vi.patch_offsets[i + 1]) for i in items])
        out[m.pixels] = batch[m.pixels][patch_idx]
        out[m.grid] = batch[m.grid][item_idx]
        for key in m.per_item:
            if key in batch:
                out[key] = batch[key][item_idx]
        if m.counts in batch:
            out[m.counts] = batch[m.counts][idx]
    return out


def shard(tokens: list[int], world_size: int) -> list[list[int]]:
    """Rows per rank, balanced by token count; each rank's rows in ascending order. Some may be empty."""
    return [sorted(p) for p in native.balanced_partition(tokens, world_size)]


def pack(tokens: list[int], rows: list[int], max_tokens: int) -> list[list[int]]:
    """Micro-batches of `rows` holding at most max_tokens tokens each (a longer row goes alone)."""
    # A row over the budget is packed as exactly the budget, so it fills a micro-batch by itself.
    bins = native.pack_by_budget([min(tokens[r], max_tokens) for r in rows], max_tokens)
    return [sorted(rows[i] for i in b) for b in bins]


def plan(lay: BatchLayout, world_size: int, max_tokens: int) -> list[list[list[int]]]:
    """[rank][micro-batch] -> rows; the same on every rank for the same batch."""
    return [pack(lay.tokens, part, max_tokens) for part in shard(lay.tokens, world_size)]
