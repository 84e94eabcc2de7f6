"""CPU hot paths from csrc/ (engine._native) with pure-Python fallbacks that give identical results.

* balanced_partition: Karmarkar-Karp largest differencing (verl's seqlen_balancing method) into k parts.
* pack_by_budget: first-fit decreasing into bins of at most max_tokens.
* mrope_position_ids: Qwen2.5-VL M-RoPE position ids by the original published rule (see its docstring).

`BACKEND` says which implementation the unsuffixed functions use ("native" or "python"); the `*_py`
functions are always the pure-Python ones. Lengths count text plus visual tokens.
"""
from __future__ import annotations

import heapq
import math
import operator
from dataclasses import dataclass
from itertools import chain
from typing import Any, Sequence

import numpy as np
import torch

try:
    from engine import _native
except ImportError:  # extension not built (e.g. a source checkout without `pip install`)
    _native = None

BACKEND = "native" if _native is not None else "python"

_INT64_MAX = 2**63 - 1


# ----------------------------------------------------------------------------- input conversion


def _int_array(x: Any, name: str, fn: str, ndim: int) -> np.ndarray:
    """A C-contiguous int64 view/copy of a list, numpy array or torch tensor; rejects non-integers."""
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bool or x.dtype.is_floating_point or x.dtype.is_complex:
            raise ValueError(f"{fn}: {name} must hold integers, got {x.dtype}")
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (ValueError, OverflowError) as e:  # ragged nesting, ints beyond any numpy type
        raise ValueError(f"{fn}: {name} is not a rectangular integer array ({e})") from None
    if arr.size == 0 and arr.dtype.kind == "f":  # np.asarray([]) is float64
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "O" or arr.dtype == np.uint64:
        # Python ints beyond int64 land in object arrays; uint64 may hold values above int64.
        try:
            arr = arr.astype(np.int64) if arr.dtype.kind == "O" else arr
        except (OverflowError, TypeError, ValueError):
            raise ValueError(f"{fn}: {name} must hold integers that fit in int64") from None
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > _INT64_MAX:
            raise ValueError(f"{fn}: {name} must hold integers that fit in int64")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{fn}: {name} must hold integers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got shape {tuple(arr.shape)}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _positive_int(x: Any, name: str, fn: str) -> int:
    if isinstance(x, bool):
        raise ValueError(f"{fn}: {name} must be an integer, got {x!r}")
    try:
        v = operator.index(x)
    except TypeError:
        raise ValueError(f"{fn}: {name} must be an integer, got {x!r}") from None
    if v < 1:
        raise ValueError(f"{fn}: {name} must be >= 1, got {v}")
    if v > _INT64_MAX:
        raise ValueError(f"{fn}: {name} = {v} does not fit in int64")
    return v


def _check_lengths(lengths: list[int], fn: str) -> None:
    total = 0
    for i, n in enumerate(lengths):
        if n < 0:
            raise ValueError(f"{fn}: lengths[{i}] = {n} is negative")
        total += n
        if total > _INT64_MAX:
            raise ValueError(f"{fn}: the sum of lengths overflows int64")


# ----------------------------------------------------------------------------- partitioning


def load_ratio(lengths: Sequence[int] | np.ndarray | torch.Tensor, partitions: list[list[int]]) -> float:
    """Max over min partition load (1.0 is perfect balance; inf when some partition is empty of load)."""
    arr = _int_array(lengths, "lengths", "load_ratio", 1)
    loads = [int(arr[p].sum()) if len(p) else 0 for p in partitions]
    if not loads or max(loads) == 0:
        return 1.0
    return math.inf if min(loads) == 0 else max(loads) / min(loads)


def balanced_partition_py(lengths: Sequence[int] | np.ndarray | torch.Tensor, k: int,
                          equal_size: bool = False) -> list[list[int]]:
    """Pure-Python Karmarkar-Karp; the tie-breaking is spelled out in csrc/partition.cpp."""
    fn = "balanced_partition"
    lens = _int_array(lengths, "lengths", fn, 1).tolist()
    k = _positive_int(k, "k", fn)
    _check_lengths(lens, fn)
    n = len(lens)
    if equal_size and n % k:
        raise ValueError(f"{fn}: equal_size needs len(lengths) divisible by k, got {n} items for k = {k}")
    if n == 0:
        return [[] for _ in range(k)]

    # A set is [sum, size, min index, head, tail]; members form a linked list through `nxt` so a merge
    # is O(1). Only non-empty sets are kept, in (sum desc, size desc, min index asc) order.
    nxt = [-1] * n

    def set_key(s: list[int]) -> tuple[int, int, int]:
        return (-s[0], -s[1], s[2])

    def entry(sets: list[list[int]], seq: int) -> tuple[int, int, int, list[list[int]]]:
        top = sets[0][0]
        bottom = sets[-1][0] if len(sets) == k else 0
        return (-(top - bottom), -top, seq, sets)  # min-heap: largest spread, then top, then oldest

    order = sorted(range(n), key=lambda i: (lens[i], i))
    group = k if equal_size else 1
    heap = [entry(sorted(([lens[i], 1, i, i, i] for i in order[off:off + group]), key=set_key), seq)
            for seq, off in enumerate(range(0, n, group))]
    heapq.heapify(heap)
    seq = len(heap)
    while len(heap) > 1:
        a = heapq.heappop(heap)[3]
        b = heapq.heappop(heap)[3]
        p, q = len(a), len(b)
        merged = []
        # Set i of a pairs with set k-1-i of b; only slots where one side is non-empty matter.
        for i in chain(range(p), range(max(p, k - q), k)):
            j = k - 1 - i
            if i < p and j < q:
                sa, sb = a[i], b[j]
                nxt[sa[4]] = sb[3]
                merged.append([sa[0] + sb[0], sa[1] + sb[1], min(sa[2], sb[2]), sa[3], sb[4]])
            else:
                merged.append(a[i] if i < p else b[j])
        merged.sort(key=set_key)
        heapq.heappush(heap, entry(merged, seq))
        seq += 1

    parts: list[list[int]] = []
    for s in heap[0][3]:
        part, i = [], s[3]
        while i != -1:
            part.append(i)
            i = nxt[i]
        parts.append(sorted(part))
    return parts + [[] for _ in range(k - len(parts))]


def balanced_partition(lengths: Sequence[int] | np.ndarray | torch.Tensor, k: int,
                       equal_size: bool = False) -> list[list[int]]:
    """Split item indices into k parts of near-equal total length (Karmarkar-Karp largest differencing).

    Returns k lists in decreasing order of load, indices ascending in each; trailing lists are empty
    when there are fewer than k items. equal_size puts exactly len(lengths) / k items in every part.
    Deterministic: same input, same output, on either backend.
    """
    if _native is None:
        return balanced_partition_py(lengths, k, equal_size)
    arr = _int_array(lengths, "lengths", "balanced_partition", 1)
    return _native.balanced_partition(arr, _positive_int(k, "k", "balanced_partition"), bool(equal_size))


def pack_by_budget_py(lengths: Sequence[int] | np.ndarray | torch.Tensor, max_tokens: int) -> list[list[int]]:
    """First-fit decreasing; ties in length keep input order."""
    fn = "pack_by_budget"
    lens = _int_array(lengths, "lengths", fn, 1).tolist()
    max_tokens = _positive_int(max_tokens, "max_tokens", fn)
    for i, n in enumerate(lens):
        if n < 0:
            raise ValueError(f"{fn}: lengths[{i}] = {n} is negative")
        if n > max_tokens:
            raise ValueError(f"{fn}: lengths[{i}] = {n} exceeds max_tokens = {max_tokens}")
    n = len(lens)
    bins: list[list[int]] = []
    if n == 0:
        return bins
    # Max segment tree over candidate bins' free room; unopened bins have full room, so the leftmost
    # leaf with room is exactly first fit (and opens a new bin when nothing open fits). First fit never
    # leaves two bins at most half full, so fewer than 2 * total / max_tokens + 1 bins ever open.
    cap = min(n, sum(lens) // max_tokens * 2 + 2)
    size = 1 << max(cap - 1, 0).bit_length()
    room = [-1] * (2 * size)
    room[size:size + cap] = [max_tokens] * cap
    for v in range(size - 1, 0, -1):
        room[v] = max(room[2 * v], room[2 * v + 1])
    for i in sorted(range(n), key=lambda j: -lens[j]):
        need = lens[i]
        v = 1
        while v < size:
            v = 2 * v if room[2 * v] >= need else 2 * v + 1
        b = v - size
        if b == len(bins):
            bins.append([])
        bins[b].append(i)
        room[v] -= need
        v >>= 1
        while v:
            room[v] = max(room[2 * v], room[2 * v + 1])
            v >>= 1
    return bins


def pack_by_budget(lengths: Sequence[int] | np.ndarray | torch.Tensor, max_tokens: int) -> list[list[int]]:
    """Pack item indices into as few bins of at most `max_tokens` as first-fit decreasing finds."""
    if _native is None:
        return pack_by_budget_py(lengths, max_tokens)
    arr = _int_array(lengths, "lengths", "pack_by_budget", 1)
    return _native.pack_by_budget(arr, _positive_int(max_tokens, "max_tokens", "pack_by_budget"))


# ----------------------------------------------------------------------------- M-RoPE position ids

_MROPE = "mrope_position_ids"


@dataclass(frozen=True)
class MropeInputs:
    """mrope_position_ids' inputs normalised to numpy: what both backends consume."""

    token_types: np.ndarray      # int64 [B, L]: 0 text, 1 image, 2 video
    mask: np.ndarray | None      # bool [B, L] or None
    image_grid: np.ndarray       # int64 [n_images, 3]
    video_grid: np.ndarray       # int64 [n_videos, 3]
    video_seconds: np.ndarray    # float32 [n_videos]: second_per_grid_t
    tokens_per_second: np.float32
    spatial_merge_size: int


from engine.video.spec import ARCHS as MROPE_RULES  # one rule per architecture, by the config's model_type


def mrope_config(config: Any) -> dict[str, int | float | str]:
    """The keyword arguments mrope_position_ids needs, read from a Qwen2.5-VL or Qwen3-VL config."""
    vision = config.vision_config
    from engine.video.spec import arch_of

    rule = arch_of(getattr(config, "model_type", None))
    return {
        "spatial_merge_size": vision.spatial_merge_size,
        # Qwen3-VL writes timestamps as text and has no temporal position scale.
        "tokens_per_second": getattr(vision, "tokens_per_second", 1) if rule == "qwen2_5_vl" else 1,
        "image_token_id": config.image_token_id,
        "video_token_id": config.video_token_id,
        "rule": rule,
    }


def _apply_rule(rule: str, image_grid_thw: Any, video_grid_thw: Any, second_per_grid_ts: Any) -> tuple[Any, Any]:
    """(video grids, seconds per grid) for the shared segment rule, under an architecture's rule.

    qwen3_vl: a video's temporal patches are separated by timestamp text (<t> <|vision_start|> frames
    <|vision_end|> per patch), so each is its own segment with grid [1, h, w]; its temporal id is then its
    start, whatever the timing, as in the published Qwen3-VL get_rope_index.
    """
    if rule not in MROPE_RULES:
        raise ValueError(f"{_MROPE}: unknown rule {rule!r}; choose one of {', '.join(MROPE_RULES)}")
    if rule == "qwen2_5_vl":
        return video_grid_thw, second_per_grid_ts
    if image_grid_thw is not None and len(image_grid_thw):
        images = _int_array(image_grid_thw, "image_grid_thw", _MROPE, 2)
        if images.shape[1:] == (3,) and (images[:, 0] != 1).any():
            raise ValueError(f"{_MROPE}: qwen3_vl images have one temporal patch; got image grids {images.tolist()}")
    if video_grid_thw is None or not len(video_grid_thw):
        return video_grid_thw, None
    videos = _int_array(video_grid_thw, "video_grid_thw", _MROPE, 2)
    if videos.shape[1:] != (3,) or (videos < 0).any():
        raise ValueError(f"{_MROPE}: video_grid_thw must be [n, 3] non-negative, got {videos.tolist()}")
    frames = np.repeat(videos, videos[:, 0], axis=0)
    frames[:, 0] = 1
    return frames, None


def _video_seconds(second_per_grid_ts: Any, n_videos: int) -> np.ndarray:
    """second_per_grid_ts as float32, one per video (1.0 each when not given, as the original)."""
    if second_per_grid_ts is None:
        return np.ones(n_videos, dtype=np.float32)
    if isinstance(second_per_grid_ts, torch.Tensor):
        if second_per_grid_ts.dtype == torch.bool or second_per_grid_ts.dtype.is_complex:
            raise ValueError(f"{_MROPE}: second_per_grid_ts must hold real numbers, got {second_per_grid_ts.dtype}")
        second_per_grid_ts = second_per_grid_ts.detach().cpu().float().numpy()
    elif isinstance(second_per_grid_ts, (list, tuple)):
        vals = []
        for v in second_per_grid_ts:
            if isinstance(v, torch.Tensor):
                v = v.item()
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"{_MROPE}: second_per_grid_ts holds {type(v).__name__}, expected numbers")
            vals.append(float(v))
        second_per_grid_ts = np.asarray(vals, dtype=np.float64)
    elif not isinstance(second_per_grid_ts, np.ndarray):
        raise ValueError(f"{_MROPE}: second_per_grid_ts must be a tensor, array or list, "
                         f"got {type(second_per_grid_ts).__name__}")
    arr = second_per_grid_ts
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{_MROPE}: second_per_grid_ts must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{_MROPE}: second_per_grid_ts must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size != n_videos:
        raise ValueError(f"{_MROPE}: second_per_grid_ts has {arr.size} entries but video_grid_thw has "
                         f"{n_videos} rows")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _grid(g: Any, name: str) -> np.ndarray:
    if g is None:
        return np.zeros((0, 3), dtype=np.int64)
    arr = _int_array(g, name, _MROPE, 2)
    if arr.shape[1] != 3:
        raise ValueError(f"{_MROPE}: {name} must have shape (n, 3), got {tuple(arr.shape)}")
    return arr


def prepare_mrope_inputs(input_ids: Any, mm_token_type_ids: Any = None, image_grid_thw: Any = None,
                         video_grid_thw: Any = None, second_per_grid_ts: Any = None, attention_mask: Any = None, *,
                         spatial_merge_size: int, tokens_per_second: int | float,
                         image_token_id: int | None = None, video_token_id: int | None = None) -> MropeInputs:
    """Check and normalise mrope_position_ids' inputs (shared by both backends)."""
    if isinstance(input_ids, torch.Tensor) and mm_token_type_ids is not None:
        # Only the shape is read then: skip the host copy of a device tensor.
        if input_ids.dim() != 2 or input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise ValueError(f"{_MROPE}: input_ids must be 2-D integers, got {input_ids.dtype} "
                             f"of shape {tuple(input_ids.shape)}")
        shape = tuple(input_ids.shape)
    else:
        ids = _int_array(input_ids, "input_ids", _MROPE, 2)
        shape = ids.shape
    if mm_token_type_ids is None:
        if image_token_id is None and video_token_id is None:
            raise ValueError(f"{_MROPE}: pass mm_token_type_ids, or image_token_id/video_token_id to derive them")
        types = np.zeros(shape, dtype=np.int64)
        if image_token_id is not None:
            types[ids == image_token_id] = 1
        if video_token_id is not None:
            types[ids == video_token_id] = 2
    else:
        types = _int_array(mm_token_type_ids, "mm_token_type_ids", _MROPE, 2)
        if types.shape != shape:
            raise ValueError(f"{_MROPE}: mm_token_type_ids has shape {tuple(types.shape)}, input_ids {shape}")
    mask = None
    if attention_mask is not None:
        m = attention_mask.detach().cpu().numpy() if isinstance(attention_mask, torch.Tensor) else np.asarray(attention_mask)
        if m.shape != shape:
            raise ValueError(f"{_MROPE}: attention_mask has shape {tuple(m.shape)}, input_ids {shape}")
        mask = np.ascontiguousarray(m != 0)
    sms = _positive_int(spatial_merge_size, "spatial_merge_size", _MROPE)
    if isinstance(tokens_per_second, bool) or not isinstance(tokens_per_second, (int, float)):
        raise ValueError(f"{_MROPE}: tokens_per_second must be a number, got {tokens_per_second!r}")
    video_grid = _grid(video_grid_thw, "video_grid_thw")
    seconds = _video_seconds(second_per_grid_ts, video_grid.shape[0])
    return MropeInputs(types, mask, _grid(image_grid_thw, "image_grid_thw"), video_grid, seconds,
                       np.float32(tokens_per_second), sms)


def mrope_core_py(x: MropeInputs) -> tuple[np.ndarray, np.ndarray]:
    """Pure-Python (numpy per segment) M-RoPE ids: positions int64 [3, B, L], deltas int64 [B, 1]."""
    B, L = x.token_types.shape
    s = x.spatial_merge_size
    positions = np.ones((3, B, L), dtype=np.int64)  # masked slots hold 1, as in the original
    deltas = np.zeros((B, 1), dtype=np.int64)
    used = {1: 0, 2: 0}
    for b in range(B):
        cols = np.flatnonzero(x.mask[b]) if x.mask is not None else np.arange(L)
        if cols.size == 0:
            raise ValueError(f"{_MROPE}: row {b} has no attended tokens")
        types = x.token_types[b, cols]
        bad = (types < 0) | (types > 2)
        if bad.any():
            j = int(cols[int(np.argmax(bad))])
            raise ValueError(f"{_MROPE}: mm_token_type_ids[{b}, {j}] = {int(x.token_types[b, j])} "
                             "(expected 0 text, 1 image or 2 video)")
        cuts = (np.flatnonzero(np.diff(types)) + 1).tolist()
        nxt, chunks = 0, []  # nxt: max of all earlier positions + 1, where every run starts
        for start, end in zip([0] + cuts, cuts + [len(types)]):
            typ = int(types[start])
            if typ == 0:
                chunks.append(np.broadcast_to(np.arange(nxt, nxt + end - start), (3, end - start)))
                nxt += end - start
                continue
            name = "image_grid_thw" if typ == 1 else "video_grid_thw"
            grids = x.image_grid if typ == 1 else x.video_grid
            g = used[typ]
            used[typ] += 1
            if g >= len(grids):
                raise ValueError(f"{_MROPE}: row {b} has more {'image' if typ == 1 else 'video'} segments than "
                                 f"{name} has rows ({len(grids)})")
            where = f"{name}[{g}] (row {b}, token {int(cols[start])})"
            t, h, w = (int(v) for v in grids[g])
            if min(t, h, w) < 0:
                raise ValueError(f"{_MROPE}: {where} has a negative entry")
            lt, lh, lw = t, h // s, w // s
            if lt * lh * lw != end - start:
                raise ValueError(f"{_MROPE}: {where} = ({t}, {h}, {w}) needs {lt * lh * lw} tokens at "
                                 f"spatial_merge_size {s} but the segment has {end - start}")
            if typ == 1:
                temporal = np.zeros(lt, dtype=np.int64)
            else:
                seconds = x.video_seconds[g]
                span = float(seconds) * float(x.tokens_per_second) * lt
                if not math.isfinite(seconds) or seconds < 0 or not span < 1e15:
                    raise ValueError(f"{_MROPE}: second_per_grid_ts {float(seconds)} of {where} is negative, "
                                     "not finite or too large")
                # long(float32(float32(t * second_per_grid_t) * tokens_per_second))
                temporal = ((np.arange(lt, dtype=np.float32) * seconds) * x.tokens_per_second).astype(np.int64)
            tt, hh, ww = np.meshgrid(temporal + nxt, np.arange(lh) + nxt, np.arange(lw) + nxt, indexing="ij")
            chunks.append(np.stack([tt, hh, ww]).reshape(3, -1))
            nxt += max(int(temporal.max()), lh - 1, lw - 1) + 1
        positions[:, b, cols] = np.concatenate(chunks, axis=1)
        deltas[b, 0] = nxt - L
    for typ, grids, name in ((1, x.image_grid, "image_grid_thw"), (2, x.video_grid, "video_grid_thw")):
        if used[typ] != len(grids):
            raise ValueError(f"{_MROPE}: {name} has {len(grids)} rows but the batch has {used[typ]} "
                             f"{'image' if typ == 1 else 'video'} segments")
    return positions, deltas


def mrope_core_native(x: MropeInputs) -> tuple[np.ndarray, np.ndarray]:
    """The csrc/ M-RoPE core on prepared inputs (requires the extension)."""
    if _native is None:
        raise RuntimeError("engine._native is not built")
    return _native.mrope_position_ids(x.token_types, x.mask, x.image_grid, x.video_grid, x.video_seconds,
                                      float(x.tokens_per_second), x.spatial_merge_size)


def _text_only_deltas(x: MropeInputs, deltas: np.ndarray) -> np.ndarray:
    """The original's text-only path takes its max over the whole row, masked slots (which hold 1) included."""
    if x.mask is None or len(x.image_grid) or len(x.video_grid):
        return deltas
    L = x.token_types.shape[1]
    padded = ~x.mask.all(axis=1, keepdims=True)
    return np.where(padded, np.maximum(deltas, 2 - L), deltas)


def _as_torch(input_ids: Any, x: MropeInputs, positions: np.ndarray, deltas: np.ndarray
              ) -> tuple[torch.Tensor, torch.Tensor]:
    deltas = _text_only_deltas(x, deltas)
    pos, d = torch.from_numpy(positions), torch.from_numpy(deltas)
    if isinstance(input_ids, torch.Tensor):  # positions in input_ids' dtype and device, as the original
        pos = pos.to(device=input_ids.device, dtype=input_ids.dtype)
        d = d.to(device=input_ids.device)
    return pos, d


def mrope_position_ids_py(input_ids: Any, mm_token_type_ids: Any = None, image_grid_thw: Any = None,
                          video_grid_thw: Any = None, second_per_grid_ts: Any = None, attention_mask: Any = None,
                          **config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-Python mrope_position_ids."""
    video_grid_thw, second_per_grid_ts = _apply_rule(config.pop("rule", "qwen2_5_vl"), image_grid_thw,
                                                     video_grid_thw, second_per_grid_ts)
    x = prepare_mrope_inputs(input_ids, mm_token_type_ids, image_grid_thw, video_grid_thw, second_per_grid_ts,
                             attention_mask, **config)
    return _as_torch(input_ids, x, *mrope_core_py(x))


def mrope_position_ids(input_ids: Any, mm_token_type_ids: Any = None, image_grid_thw: Any = None,
                       video_grid_thw: Any = None, second_per_grid_ts: Any = None, attention_mask: Any = None, *,
                       spatial_merge_size: int, tokens_per_second: int | float,
                       image_token_id: int | None = None, video_token_id: int | None = None,
                       rule: str = "qwen2_5_vl") -> tuple[torch.Tensor, torch.Tensor]:
    """M-RoPE ids (position_ids [3, B, L], deltas [B, 1]) by the original published rule of `rule`'s model.

    The rule the released Qwen2.5-VL models were trained with (and vLLM implements): each text run and
    each vision segment starts at max(all earlier positions of its row) + 1; a vision segment's tokens
    sit at start + (temporal, h, w) over its merged grid, where a video's temporal id is
    long(float32(float32(t * second_per_grid_t) * tokens_per_second)) and an image's is 0. Masked slots
    hold 1; deltas are max position + 1 - L, so decoding continues at max + 1. This is *not*
    transformers 5.x's get_rope_index, which starts the text after a video at start + max(h, w) / merge.

    Inputs are torch tensors, numpy arrays or lists, plus config values (`mrope_config(config)`
    collects them). mm_token_type_ids may be left out when the token ids are given. Grids are consumed
    in order across the whole batch and must match the segments exactly; second_per_grid_ts, when
    given, has one entry per video (float32 arithmetic whatever its dtype). Anything inconsistent
    raises ValueError.

    rule "qwen3_vl" (Qwen3-VL, published with transformers 4.57): the same walk, but a video's timestamps are
    text between its temporal patches, so each patch is a segment of its own (`_apply_rule`) at temporal id 0;
    video_grid_thw still has one row per video, and second_per_grid_ts is not used.
    """
    video_grid_thw, second_per_grid_ts = _apply_rule(rule, image_grid_thw, video_grid_thw, second_per_grid_ts)
    x = prepare_mrope_inputs(input_ids, mm_token_type_ids, image_grid_thw, video_grid_thw, second_per_grid_ts,
                             attention_mask, spatial_merge_size=spatial_merge_size,
                             tokens_per_second=tokens_per_second, image_token_id=image_token_id,
                             video_token_id=video_token_id)
    core = mrope_core_native if _native is not None else mrope_core_py
    return _as_torch(input_ids, x, *core(x))
