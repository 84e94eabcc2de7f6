"""The weight-sync error type (defined with the others in engine/errors.py)."""
from engine.errors import WeightSyncError

__all__ = ["WeightSyncError"]
