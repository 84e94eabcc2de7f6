"""Qwen2-VL / Qwen3-VL preprocessing in torch on any device: PIL-exact bicubic resize, normalise, patchify."""
from __future__ import annotations

import math

import numpy as np
import torch

from engine.video.spec import QWEN2_5_VL, VisionSpec

# Pillow's Resample.c works in fixed point with this many fractional bits (32 - 8 - 2).
_PRECISION_BITS = 22


def _bicubic(x: float) -> float:
    a = -0.5  # Pillow's bicubic constant
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def pil_bicubic_coeffs(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for BICUBIC, reproduced step by step.

    Returns (index [out, k] int64, weight [out, k] int32) so that
    out[x] = clip8((2**21 + sum_j in[index[x, j]] * weight[x, j]) >> 22).
    Padding taps point at a valid pixel with weight 0.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    index = torch.zeros(out_size, ksize, dtype=torch.int64)
    weight = torch.zeros(out_size, ksize, dtype=torch.int32)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)  # C casts truncate toward zero
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ws = [_bicubic((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = sum(ws)
        if ww != 0.0:
            ws = [w / ww for w in ws]
        for x, w in enumerate(ws):
            fixed = int(-0.5 + w * (1 << _PRECISION_BITS)) if w < 0 else int(0.5 + w * (1 << _PRECISION_BITS))
            weight[xx, x] = fixed
            index[xx, x] = xmin + x
        index[xx, xmax:] = xmin
    return index, weight


def _resample(x: torch.Tensor, dim: int, out_size: int) -> torch.Tensor:
    """One Pillow pass along `dim` of a uint8 tensor -> uint8."""
    index, weight = pil_bicubic_coeffs(x.shape[dim], out_size)
    index, weight = index.to(x.device), weight.to(x.device)
    # Resampled axis first: each tap then gathers whole contiguous rows (memcpy speed).
    rows = x.movedim(dim, 0).contiguous()
    flat = rows.view(rows.shape[0], -1)
    out = torch.empty((out_size, flat.shape[1]), dtype=torch.uint8, device=x.device)
    # Column blocks keep the accumulator cache-resident on CPU; one block on GPU.
    block = flat.shape[1] if x.is_cuda else max(1, (1 << 18) // max(out_size, 1)) * 16
    for c0 in range(0, flat.shape[1], block):
        src = flat[:, c0:c0 + block]
        acc = torch.full((out_size, src.shape[1]), 1 << (_PRECISION_BITS - 1), dtype=torch.int32, device=x.device)
        # Tap by tap, in Pillow's order. Integer sums are exact, so the result is bit-identical.
        for j in range(index.shape[1]):
            acc.addcmul_(src.index_select(0, index[:, j]).to(torch.int32), weight[:, j, None])
        out[:, c0:c0 + block] = (acc >> _PRECISION_BITS).clamp_(0, 255)
    return out.view(out_size, *rows.shape[1:]).movedim(0, dim)


def resize_bicubic_pil(frames: torch.Tensor, height: int, width: int, use_pil: bool | None = None) -> torch.Tensor:
    """uint8 [T, H, W, C] -> uint8 [T, height, width, C], bit-identical to Pillow 13's
    `Image.resize((width, height), BICUBIC)` on each frame, on the tensor's device.

    CPU tensors go through Pillow itself when it is installed (`use_pil=None`): its C loops are
    several times faster than the tensor ops on a CPU. Elsewhere (GPU) the torch implementation
    runs: Pillow resamples one axis, rounds to uint8, then the other; a pass is skipped when its
    side keeps its size; Pillow >= 13 runs the vertical pass first when the height shrinks by more
    than twice as many pixels as the width does (older Pillow always went horizontal first).
    """
    if frames.dtype != torch.uint8 or frames.dim() != 4:
        raise ValueError(f"expected uint8 [T, H, W, C], got {frames.dtype} {tuple(frames.shape)}")
    if use_pil is None:
        use_pil = frames.device.type == "cpu" and _pil() is not None
    if use_pil:
        return _resize_with_pil(frames, height, width)
    in_h, in_w = frames.shape[1], frames.shape[2]
    vertical_first = (in_h - height) > 0 and (in_h - height) > (in_w - width) * 2
    x = frames
    for dim in ((1, 2) if vertical_first else (2, 1)):
        out = height if dim == 1 else width
        if x.shape[dim] != out:
            x = _resample(x, dim, out)
    return x.contiguous()


def _pil():
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def _resize_with_pil(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    image = _pil()
    if frames.shape[1:3] == (height, width):
        return frames.contiguous()
    resized = [np.asarray(image.fromarray(a).resize((width, height), image.Resampling.BICUBIC))
               for a in frames.cpu().numpy()]
    return torch.from_numpy(np.stack(resized).reshape(frames.shape[0], height, width, -1))


def _stats(spec: VisionSpec, device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(spec.image_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.image_std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return mean, std


def normalize(frames: torch.Tensor, spec: VisionSpec = QWEN2_5_VL) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W]: x/255 (computed in float64 then cast, as
    transformers does), then (x - mean) / std in float32 with the architecture's statistics."""
    x = (frames.permute(0, 3, 1, 2).to(torch.float64) * (1 / 255)).to(torch.float32)
    mean, std = _stats(spec, frames.device)
    return (x - mean) / std


def patchify(video: torch.Tensor, spec: VisionSpec = QWEN2_5_VL) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """float [T, C, H, W] -> ([t*h*w, C*tp*p*p], (t, h, w)), the Qwen2-VL / Qwen3-VL patch order (p = patch_size,
    tp = temporal_patch_size).

    An odd T repeats its last frame, as both video processors do.
    """
    tp, ps, m = spec.temporal_patch_size, spec.patch_size, spec.merge_size
    if pad := -video.shape[0] % tp:
        video = torch.cat([video, video[-1:].expand(pad, -1, -1, -1)], dim=0)
    t, c, h, w = video.shape
    gt, gh, gw = t // tp, h // ps, w // ps
    p = video.reshape(gt, tp, c, gh // m, m, ps, gw // m, m, ps)
    # -> (gt, gh/m, gw/m, m_h, m_w, C, tp, ph, pw): merge windows contiguous, channel-major patches
    p = p.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return p.reshape(gt * gh * gw, c * tp * ps * ps), (gt, gh, gw)


def preprocess(frames: torch.Tensor, height: int, width: int, spec: VisionSpec = QWEN2_5_VL
               ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
    """Decoded uint8 frames -> (resized uint8 frames, pixel_values, grid_thw)."""
    resized = resize_bicubic_pil(frames, height, width)
    pixel_values, grid = patchify(normalize(resized, spec), spec)
    return resized, pixel_values, grid


def unpatchify(pixel_values: torch.Tensor, grid_thw: tuple[int, int, int], spec: VisionSpec = QWEN2_5_VL
               ) -> torch.Tensor:
    """The inverse of patchify: [t*h*w, C*tp*p*p] -> float [tp*t, C, p*h, p*w] (normalised values)."""
    tp, ps, m = spec.temporal_patch_size, spec.patch_size, spec.merge_size
    gt, gh, gw = (int(x) for x in grid_thw)
    c = pixel_values.shape[1] // (tp * ps * ps)
    p = pixel_values.reshape(gt, gh // m, gw // m, m, m, c, tp, ps, ps)
    p = p.permute(0, 6, 5, 1, 3, 7, 2, 4, 8)  # back to (gt, tp, C, gh/m, m_h, ph, gw/m, m_w, pw)
    return p.reshape(gt * tp, c, gh * ps, gw * ps)


def denormalize(video: torch.Tensor, spec: VisionSpec = QWEN2_5_VL) -> torch.Tensor:
    """float [T, 3, H, W] (normalised) -> uint8 [T, H, W, 3]: the pixels the model was shown."""
    mean, std = _stats(spec, "cpu")
    x = (video.float().cpu() * std + mean) * 255
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
