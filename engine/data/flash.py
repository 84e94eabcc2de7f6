"""The flash task: a grey clip in which the whole screen flashes one colour for a moment; which colour?

The embedded task of the learning demo (`vthink demo`). It is built so that only looking answers it:

* the answer is only in the pixels (the question and options are the same for every clip, and each
  split cycles the four colours evenly, so text alone scores chance);
* the flash lasts FLASH_S seconds of a long clip, so a sparse global sample usually misses it: an agent
  that finds it (clip_retrieval over the coarse captions) and looks again (frame_zoom) answers, one
  that does not, guesses;
* the whole scene takes the colour, which the tiny model's ViT learns in tens of steps.

Captions come at two levels, as in VideoThinker's caption space: coarse segment captions (what the
retrieval index sees; they say *that* the screen flashes, never the colour) and fine per-second
captions (`fine_captions`, what a caption-space zoom returns; they name the colour).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.data.schema import Event, QARow, Segment, VideoRecord

FLASH_COLOURS = ("red", "green", "blue", "yellow")
FLASH_S = 2  # seconds; flashes start on even seconds, so they align with the 2-s retrieval clips
QUESTION = "What colour is the brief flash?"
GREY, FLASHES = "the screen is grey", "a flash fills the screen"


def flash_starts(duration_s: float) -> list[int]:
    """Whole even seconds a flash may start at, away from both ends of the clip."""
    return list(range(2, int(duration_s) - FLASH_S - 1, 2))


def plan_flash_video(video_id: str, path: Path, seed: int, index: int, colour: str, codec: str, width: int,
                     height: int, fps: float, num_frames: int) -> VideoRecord:
    """One flash clip: grey, then `colour` over [start, start + FLASH_S), then grey. Pure function of its arguments."""
    duration = num_frames / fps
    starts = flash_starts(duration)
    if not starts:
        raise ValueError(f"a flash clip needs >= {2 * FLASH_S + 2} s, got {duration}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 7]))
    start = float(starts[int(rng.integers(len(starts)))])
    end = start + FLASH_S
    ev = Event("flash", start, end, 0, "screen", colour, 0.0, 0.0, 0.0, "", "")
    segments = [Segment(0.0, start, GREY), Segment(start, end, FLASHES), Segment(end, duration, GREY)]
    return VideoRecord(video_id=video_id, path=path, codec=codec, fps=fps, num_frames=num_frames, width=width,
                       height=height, duration_s=duration, segments=segments, events=[ev], seed=seed)


def flash_event(record: VideoRecord) -> Event:
    return next(ev for ev in record.events if ev.kind == "flash")


def fine_captions(record: VideoRecord) -> list[tuple[float, str]]:
    """(second, caption) for every whole second of the clip: the caption-space view of each frame."""
    ev = flash_event(record)
    out = []
    for t in range(int(record.duration_s)):
        inside = ev.start_s <= t < ev.end_s
        out.append((float(t), f"the screen is {ev.colour}" if inside else "the screen is grey"))
    return out


def flash_questions(record: VideoRecord, split: str) -> list[QARow]:
    """One multiple-choice row: the flash's colour, the options always in FLASH_COLOURS order."""
    ev = flash_event(record)
    letter = "ABCD"[FLASH_COLOURS.index(ev.colour)]
    return [QARow(f"{record.video_id}-q00", record.video_id, record.path, "mcq", QUESTION, list(FLASH_COLOURS),
                  letter, None, split)]


def balanced_colours(indices: list[int], seed: int, salt: int) -> dict[int, str]:
    """Colours for the videos of one split: the four colours cycled over a seeded shuffle of them."""
    order = np.random.default_rng(np.random.SeedSequence([seed, salt, 11])).permutation(len(indices))
    return {indices[int(k)]: FLASH_COLOURS[rank % len(FLASH_COLOURS)] for rank, k in enumerate(order)}
