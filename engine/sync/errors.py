"""The typed error weight sync raises: a broken stream, a bad layout or a checksum mismatch."""
from engine.errors import VthinkError


class WeightSyncError(VthinkError):
    """A weight sync could not be set up or completed, or its data failed verification."""
