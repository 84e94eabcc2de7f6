"""Rewards for a response to a dataset row: accuracy by problem type, format by layout, optional tool-use
shaping and a user function, combined by config weights.

Accuracy per kind: mcq letter match, grounding temporal IoU, numerical match within reward.numeric_tolerance,
ocr 1 - WER, free-form ROUGE-L F, regression 1 - relative error.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from engine.errors import ConfigError, VthinkError
from engine.reward.accuracy import grounding_reward, mcq_reward, temporal_iou
from engine.reward.format import LAYOUTS, format_reward
from engine.reward.numeric import numeric_reward, parse_number
from engine.reward.text import free_form_reward, ocr_reward, regression_reward
from engine.reward.tool_use import tool_use_reward

__all__ = ["Reward", "RewardFnError", "score", "score_sample", "accuracy_reward", "load_reward_fn", "mcq_reward",
           "grounding_reward", "temporal_iou", "format_reward", "numeric_reward", "parse_number", "ocr_reward",
           "free_form_reward", "regression_reward", "tool_use_reward", "LAYOUTS"]


@dataclass(frozen=True)
class Reward:
    accuracy: float
    format: float
    total: float
    tool: float = 0.0
    user: dict[str, float] = field(default_factory=dict)  # reward.fn's components ("fn" when it returns a float)


RESERVED = frozenset({"total", "accuracy", "format", "tool"})


class RewardFnError(VthinkError, ValueError):
    """The user reward function (reward.fn) returned something that is not a finite number or a dict of them."""


def accuracy_reward(response: str, row, numeric_tolerance: float = 0.0) -> float:
    """The accuracy term of `response` for `row`, in [0, 1], by the row's kind."""
    kind = row.kind
    if kind == "mcq":
        return mcq_reward(response, row.answer)
    if kind == "grounding":
        return grounding_reward(response, tuple(row.answer_span_s))
    if kind == "numerical":
        return numeric_reward(response, row.answer, rel_tol=numeric_tolerance)
    if kind == "ocr":
        return ocr_reward(response, row.answer)
    if kind == "free-form":
        return free_form_reward(response, row.answer)
    if kind == "regression":
        return regression_reward(response, row.answer)
    raise ValueError(f"row {row.id}: unknown question kind {kind!r}")


def score(response: str, row, accuracy_weight: float = 1.0, format_weight: float = 1.0, *,
          tool_weight: float = 0.0, tool_calls: tuple[int, int] = (0, 0), format_text: str | None = None,
          numeric_tolerance: float = 0.0, layout: str = "video_thinker") -> Reward:
    """accuracy_weight * accuracy + format_weight * format + tool_weight * tool_use.

    `format_text` is what the format rule reads (default: the whole response); an agent's
    trajectory passes its last turn, the one that must hold the final answer block.
    `tool_calls` = (succeeded, failed) for the tool-use term.
    """
    acc = accuracy_reward(response, row, numeric_tolerance)
    fmt = format_reward(response if format_text is None else format_text, layout)
    tool = tool_use_reward(*tool_calls) if tool_weight else 0.0
    return Reward(accuracy=acc, format=fmt, tool=tool, total=accuracy_weight * acc + format_weight * fmt + tool_weight * tool)


def score_sample(sample, row, cfg, agent: bool = False) -> Reward:
    """Score a rollout Sample with a RewardConfig: agents are format-scored on their last turn; reward.fn's
    value (or the sum of its components) is added with weight reward.fn_weight."""
    ok = sum(1 for e in sample.tool_trace if e.kind == "tool" and e.ok)
    failed = sum(1 for e in sample.tool_trace if e.kind in ("tool", "error") and not e.ok)
    r = score(sample.response_text, row, cfg.accuracy_weight, cfg.format_weight, tool_weight=cfg.tool_weight,
              tool_calls=(ok, failed), format_text=sample.final_text if agent else None,
              numeric_tolerance=cfg.numeric_tolerance, layout=cfg.format_layout)
    if cfg.fn is None:
        return r
    try:
        value = load_reward_fn(cfg.fn)(sample, row)
    except Exception as e:  # the user's code may fail in any way: say whose and on which row
        raise RewardFnError(f"reward.fn {cfg.fn} raised on row {row.id}: {type(e).__name__}: {e}") from e
    user = _components(value, cfg.fn, row)
    return Reward(accuracy=r.accuracy, format=r.format, tool=r.tool, user=user,
                  total=r.total + cfg.fn_weight * sum(user.values()))


def _components(value, name: str, row) -> dict[str, float]:
    items = value.items() if isinstance(value, dict) else [("fn", value)]
    out = {}
    for k, v in items:
        if str(k) in RESERVED:
            raise RewardFnError(f"reward.fn {name} returned a component named {k!r} for row {row.id}; "
                                f"{sorted(RESERVED)} are the built-in terms' names")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RewardFnError(f"reward.fn {name} returned {v!r} for row {row.id} ({k}); expected a finite "
                                "number or a dict of them")
        out[str(k)] = float(v)
    return out


@lru_cache(maxsize=8)
def load_reward_fn(spec: str) -> Callable:
    """The function `package.module:function` or `path/to/file.py:function` names (a module is looked up from the
    working directory too, as verl does), checked to take (sample, row); ConfigError("reward.fn")."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError("reward.fn", f"expected 'package.module:function' or 'path/to/file.py:function', "
                                       f"got {spec!r}")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise ConfigError("reward.fn", f"{module_name!r} is not a file (from {os.getcwd()})")
            loader = importlib.util.spec_from_file_location(f"vthink_reward_{path.stem}", path)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.append(os.getcwd())
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as e:  # the user's module may fail in any way while importing
        raise ConfigError("reward.fn", f"cannot import {module_name!r} (from {os.getcwd()}): "
                                       f"{type(e).__name__}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError("reward.fn", f"{module_name} has no function {attr!r}")
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise ConfigError("reward.fn", f"{spec} must take two arguments (sample, row)") from None
    except ValueError:
        pass  # builtins without a signature: take them as they are
    return fn
