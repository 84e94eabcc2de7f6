"""Value rules of config fields: declared beside the field (`ruled`), checked in one place (`check`)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from engine.errors import ConfigError


def ruled(default: Any, ok: Callable[[Any], bool], expected: str) -> Any:
    """A dataclass field with `default` whose value must satisfy `ok` (`expected` says what that means)."""
    return dataclasses.field(default=default, metadata={"ok": ok, "expected": expected})


def check(obj: Any, prefix: str) -> None:
    """Raise ConfigError("<prefix>.<field>") for the first field of `obj` (nested sections too) that breaks its rule."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            check(value, key)
        elif "ok" in f.metadata and not f.metadata["ok"](value):
            raise ConfigError(key, f"expected {f.metadata['expected']}, got {value!r}")
