"""The glimpse task: a long clip over its own textured background in which a coloured box shows for 2-4 s.

The embedded task of the learning demo (`vthink demo`), built so that only looking answers it and no
clip is seen twice:

* every clip is unique by content: its own smooth grey texture, its own length (drawn from
  [data.min_duration_s, data.duration_s]), its own target time, place and size;
* the *target* (kind "glimpse") is a saturated box covering part of the scene (never all of it) for
  2-4 whole seconds; 1-3 *distractors* (kind "sweep": a white or black bar sliding across) happen
  elsewhere, so "look where something moves" is not enough;
* questions: the target's colour (multiple choice, options shuffled per row, answer letters and colours
  balanced within each split) and, for a quarter of the clips, when the target shows (grounding, scored
  by temporal IoU). Text alone scores chance.

Captions come at two levels, as in VideoThinker's caption space: coarse segment captions (what
clip_retrieval indexes) say *that* a coloured box appears, never its colour; fine per-second captions
(`fine_captions`, what a caption-space zoom returns) name it.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from engine.data.frame_code import draw_frame_code, strip_height
from engine.data.schema import Event, QARow, Segment, VideoRecord, format_span

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40), "green": (40, 190, 60), "blue": (40, 80, 230), "yellow": (235, 215, 40)}
QUESTION = "What color is the box that appears briefly?"
WHEN = "When does the colored box appear?"
# Coarse captions: the retrieval index sees these (and never the colour).
TARGET_CAPTION, SWEEP_CAPTION, STILL_CAPTION = "a colored box appears", "a line moves across", "the background is still"
QUERY = "colored box"  # what the scripted planner asks clip_retrieval for
LETTERS = "ABCD"
GROUNDING_EVERY = 4  # one clip in four gets a grounding question instead of the colour question


def _clip_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index, 29]))


def clip_duration(seed: int, index: int, min_s: float, max_s: float) -> int:
    """Whole seconds, uniform in [min_s, max_s]: every clip has its own length."""
    lo, hi = int(np.ceil(min_s)), int(np.floor(max_s))
    return int(_clip_rng(seed, index).integers(lo, hi + 1))


def plan_glimpse_video(video_id: str, path: Path, seed: int, index: int, colour: str, codec: str, width: int,
                       height: int, fps: float, duration_s: int) -> VideoRecord:
    """One clip's events and captions (no rendering). Pure function of its arguments."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 31]))
    dur = int(duration_s)
    length = int(rng.integers(2, 5))
    start = int(rng.integers(2, dur - length - 1))
    w, h = float(rng.uniform(0.3, 0.55)), float(rng.uniform(0.35, 0.65))
    cx, cy = float(rng.uniform(w / 2, 1 - w / 2)), float(rng.uniform(h / 2, 1 - h / 2))
    events = [Event("glimpse", float(start), float(start + length), 0, "box", colour, cy, cx, cx, "", "", w=w, h=h)]
    # Distractors: whole-second slots that keep >= 1 s away from the target and from each other.
    busy = [(start - 1, start + length + 1)]
    for k in range(int(rng.integers(1, 4))):
        for _ in range(20):
            n = int(rng.integers(2, 5))
            s = int(rng.integers(1, dur - n))
            if all(s + n + 1 <= a or s - 1 >= b for a, b in busy):
                shade = "white" if rng.random() < 0.5 else "black"
                x0, x1 = (0.0, 1.0) if rng.random() < 0.5 else (1.0, 0.0)
                events.append(Event("sweep", float(s), float(s + n), k + 1, "bar", shade, 0.5, x0, x1, "", "",
                                    w=0.12, h=1.0))
                busy.append((s, s + n))
                break
    events.sort(key=lambda e: e.start_s)
    segments, t = [], 0.0
    for ev in events:
        if ev.start_s > t:
            segments.append(Segment(t, ev.start_s, STILL_CAPTION))
        segments.append(Segment(ev.start_s, ev.end_s, TARGET_CAPTION if ev.kind == "glimpse" else SWEEP_CAPTION))
        t = ev.end_s
    if t < dur:
        segments.append(Segment(t, float(dur), STILL_CAPTION))
    num_frames = round(dur * fps)
    return VideoRecord(video_id=video_id, path=path, codec=codec, fps=fps, num_frames=num_frames, width=width,
                       height=height, duration_s=num_frames / fps, segments=segments, events=events, seed=seed)


def target(record: VideoRecord) -> Event:
    return next(ev for ev in record.events if ev.kind == "glimpse")


def target_span(record: VideoRecord) -> tuple[float, float] | None:
    """[start, end) of the clip's target event, or None when the record has none (another task's clip)."""
    ev = next((e for e in record.events if e.kind in ("glimpse", "flash")), None)
    return None if ev is None else (ev.start_s, ev.end_s)


def background(record: VideoRecord) -> np.ndarray:
    """The clip's own still texture, uint8 [scene_h, W]: smooth grey blobs (a per-clip seed, never shared)."""
    rng = np.random.default_rng(np.random.SeedSequence([record.seed or 0, zlib.crc32(record.video_id.encode()), 37]))
    scene_h, w = record.height - strip_height(record.height), record.width
    coarse = rng.uniform(50, 170, size=(5, 7))
    ys, xs = np.linspace(0, 4, scene_h), np.linspace(0, 6, w)
    y0, x0 = np.minimum(ys.astype(int), 3), np.minimum(xs.astype(int), 5)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    fine = rng.normal(0, 6, size=(scene_h, w))  # grain, so no two clips share even a flat patch
    return np.clip(top * (1 - fy) + bottom * fy + fine, 0, 255).astype(np.uint8)


def _box(ev: Event, t: float, w: int, h: int) -> tuple[int, int, int, int]:
    x = ev.x_from if ev.end_s <= ev.start_s else ev.x_from + (ev.x_to - ev.x_from) * (t - ev.start_s) / (ev.end_s - ev.start_s)
    bw, bh = ev.w * w, ev.h * h
    return (max(0, round(x * w - bw / 2)), max(0, round(ev.y * h - bh / 2)),
            min(w, round(x * w + bw / 2)), min(h, round(ev.y * h + bh / 2)))


def render_frames(record: VideoRecord):
    """Every frame of the clip, uint8 [H, W, 3] RGB, in order (the texture is built once)."""
    scene = np.repeat(background(record)[:, :, None], 3, axis=2)
    h, w = scene.shape[:2]
    for i in range(record.num_frames):
        frame = np.zeros((record.height, w, 3), dtype=np.uint8)
        frame[:h] = scene
        t = i / record.fps
        for ev in record.events:
            if ev.start_s <= t + 1e-9 < ev.end_s:
                x0, y0, x1, y1 = _box(ev, t, w, h)
                rgb = COLOURS.get(ev.colour) or ((245, 245, 245) if ev.colour == "white" else (10, 10, 10))
                frame[y0:y1, x0:x1] = rgb
        draw_frame_code(frame, i)
        yield frame


def fine_captions(record: VideoRecord) -> list[tuple[float, str]]:
    """(second, caption) for every whole second: the caption-space view of each frame (names the colour)."""
    out = []
    for t in range(int(record.duration_s)):
        shown = [ev for ev in record.events if ev.start_s <= t < ev.end_s]
        if any(ev.kind == "glimpse" for ev in shown):
            out.append((float(t), f"a {target(record).colour} box is shown"))
        elif shown:
            out.append((float(t), f"a {shown[0].colour} line moves across"))
        else:
            out.append((float(t), "only the background"))
    return out


def split_plan(indices: list[int], seed: int, salt: int) -> dict[int, tuple[str, str | None]]:
    """For the clips of one split: (colour, answer letter or None for a grounding question), balanced.

    Colours cycle over one seeded shuffle of the clips; the question kind and, for colour questions, the
    answer letter cycle over another, so every colour and every letter is equally common."""
    names = list(COLOURS)
    by_colour = np.random.default_rng(np.random.SeedSequence([seed, salt, 41])).permutation(len(indices))
    by_kind = np.random.default_rng(np.random.SeedSequence([seed, salt, 43])).permutation(len(indices))
    colour = {indices[int(k)]: names[r % len(names)] for r, k in enumerate(by_colour)}
    out, mcq = {}, 0
    for r, k in enumerate(by_kind):
        i = indices[int(k)]
        if r % GROUNDING_EVERY == GROUNDING_EVERY - 1:
            out[i] = (colour[i], None)
        else:
            out[i] = (colour[i], LETTERS[mcq % len(LETTERS)])
            mcq += 1
    return out


def glimpse_questions(record: VideoRecord, split: str, letter: str | None, index: int, seed: int) -> list[QARow]:
    """One row: the target's colour with the right option at `letter`, or (letter None) when it shows."""
    ev = target(record)
    if letter is None:
        span = (ev.start_s, ev.end_s)
        return [QARow(f"{record.video_id}-q00", record.video_id, record.path, "grounding", WHEN, [],
                      format_span(*span), span, split)]
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 47]))
    others = [c for c in COLOURS if c != ev.colour]
    others = [others[int(k)] for k in rng.permutation(len(others))]
    at = LETTERS.index(letter)
    options = [*others[:at], ev.colour, *others[at:]]
    return [QARow(f"{record.video_id}-q00", record.video_id, record.path, "mcq", QUESTION, options, letter, None, split)]
