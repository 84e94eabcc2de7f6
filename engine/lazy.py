"""Package attributes imported on first use (PEP 562): a light import for callers that need one cheap name."""
import importlib
import sys
from typing import Any, Callable


def lazy_attributes(package: str, home: dict[str, str]) -> Callable[[str], Any]:
    """A module-level __getattr__ for `package` that imports each name in `home` (name -> submodule) when first
    asked for, and keeps it on the package."""

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
