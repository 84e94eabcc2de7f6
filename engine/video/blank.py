"""Blank video: clips with their real timing and shape but blank pixels (the blank-video ablation and control)."""
from __future__ import annotations

from dataclasses import replace

import torch


class BlankVideoService:
    """A VideoService whose clips keep their timing and shape but carry blank pixels (all zeros after
    normalisation, the mean colour): the blank-video ablation."""

    def __init__(self, service):
        self._service = service

    def sample(self, *args, **kwargs):
        return _blank(self._service.sample(*args, **kwargs))

    def window(self, *args, **kwargs):
        return _blank(self._service.window(*args, **kwargs))

    def crop(self, *args, **kwargs):
        return _blank(self._service.crop(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self._service, name)


def _blank(clip):
    # Another key: caches keyed on the decode identity must not hand back the real clip's embeddings.
    return replace(clip, frames=torch.zeros_like(clip.frames), pixel_values=torch.zeros_like(clip.pixel_values),
                   key=None if clip.key is None else (*clip.key, "blank"))
