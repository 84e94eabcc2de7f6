"""Typed errors shared across the package; each names what was wrong."""


class VthinkError(Exception):
    """Base class of every error vthink raises on purpose."""


class ConfigError(VthinkError, ValueError):
    """A config key is unknown, has the wrong type or an impossible value."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


class VideoDecodeError(VthinkError):
    """A video file could not be read or decoded."""


class VideoRequestError(VthinkError, ValueError):
    """A request to the video service cannot be served (bad window, bbox, backend...)."""


class ToolCallError(VthinkError, ValueError):
    """A tool call is malformed, names an unknown tool or has bad arguments."""


class WeightSyncError(VthinkError):
    """A weight sync could not be set up or completed, or its data failed verification."""


class SynthError(VthinkError, RuntimeError):
    """Trajectory synthesis failed: a chat model endpoint could not be reached or gave an unusable answer."""


class StorageError(VthinkError):
    """A node cannot read or write a path every node must share (model.path, the videos, trainer.output_dir)."""


class ClusterFailure(VthinkError):
    """An actor died or a collective failed, and no restart was left (trainer.max_restarts)."""
