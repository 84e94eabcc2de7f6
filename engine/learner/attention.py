"""Which attention kernel the learner's model runs: flash-attn where it can, SDPA everywhere else.

flash-attn unpads a micro-batch's rows into one varlen call instead of SDPA over a dense [L, L] mask per row,
but it runs only on CUDA, only in bf16/fp16, and only when its compiled extension loads: a wheel built for
another torch fails at import with an undefined symbol. Each of those falls back to SDPA and says why once,
instead of crashing the learner's build (fp32 tiny models, a stale wheel) halfway through start-up.
"""
from __future__ import annotations

import importlib
import logging

import torch

log = logging.getLogger(__name__)

# The flash-attn releases this code is tested against (pyproject.toml's `gpu` extra pins the same range).
FLASH_ATTN_TESTED = ((2, 8), (2, 9))  # [low, high)


def _release(version: str) -> tuple[int, int]:
    major, minor = (version.split(".") + ["0"])[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def attention_implementation(device_type: str, dtype: torch.dtype) -> tuple[str, str]:
    """(transformers' attn_implementation, why): "flash_attention_2" only for a CUDA device, a half-precision
    compute dtype and a flash-attn that imports and lies in FLASH_ATTN_TESTED; "sdpa" otherwise."""
    if device_type != "cuda":
        return "sdpa", "flash-attn runs on CUDA only"
    if dtype not in (torch.bfloat16, torch.float16):
        return "sdpa", f"flash-attn needs bf16 or fp16 and model.dtype is {str(dtype).removeprefix('torch.')}"
    try:
        flash_attn = importlib.import_module("flash_attn")
    except ModuleNotFoundError:
        return "sdpa", "flash-attn is not installed"
    except Exception as e:  # ImportError / OSError from a wheel built against another torch or CUDA
        return "sdpa", f"flash-attn is installed but does not import ({type(e).__name__}: {e})"
    version = str(getattr(flash_attn, "__version__", "0"))
    low, high = FLASH_ATTN_TESTED
    if not low <= _release(version) < high:
        return "sdpa", (f"flash-attn {version} is outside the tested range "
                        f">={low[0]}.{low[1]},<{high[0]}.{high[1]}")
    return "flash_attention_2", f"flash-attn {version}"


def choose_attention(device: torch.device, dtype: torch.dtype) -> str:
    """attention_implementation, logged once per learner build."""
    impl, why = attention_implementation(device.type, dtype)
    (log.info if impl == "flash_attention_2" or device.type != "cuda" else log.warning)(
        "learner attention: %s (%s)", impl, why)
    return impl
