"""The flash task: the answer is only in the pixels, the splits are balanced, the generator is deterministic."""
import collections
import json

import numpy as np
import pytest

from engine.data.dataset import load_rows, load_videos
from engine.data.flash import FLASH_COLOURS, FLASH_S, fine_captions, flash_event
from engine.data.synthetic import COLOURS, BACKGROUND, expected_frame, make_dataset
from engine.video import FramePolicy, VideoService


@pytest.fixture(scope="module")
def flash_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("flash")
    make_dataset(root, num_videos=24, seed=3, width=128, height=96, fps=2, duration_s=16, eval_fraction=0.5,
                 task="flash")
    return root


def test_answers_are_balanced_per_split_and_text_alone_is_chance(flash_dir):
    for split in ("train", "eval"):
        rows = load_rows(flash_dir / f"{split}.jsonl")
        counts = collections.Counter(r.answer for r in rows)
        assert set(counts) == set("ABCD") and max(counts.values()) - min(counts.values()) <= 1
        # Every question and option list is the same text: nothing but the video tells them apart.
        assert len({(r.question, tuple(r.options)) for r in rows}) == 1
        assert rows[0].options == list(FLASH_COLOURS)


def test_the_flash_is_brief_and_only_the_pixels_and_fine_captions_name_its_colour(flash_dir):
    records = load_videos(flash_dir)
    for rec in records.values():
        ev = flash_event(rec)
        assert ev.end_s - ev.start_s == FLASH_S and 0 < ev.start_s and ev.end_s < rec.duration_s
        assert all(c not in s.caption for s in rec.segments for c in COLOURS)  # coarse captions: colour-free
        named = [t for t, c in fine_captions(rec) if ev.colour in c]
        assert named == [float(t) for t in range(int(ev.start_s), int(ev.end_s))]
        inside, outside = int(ev.start_s * rec.fps) + 1, 0
        assert tuple(expected_frame(rec, inside)[10, 10]) == COLOURS[ev.colour]
        assert tuple(expected_frame(rec, outside)[10, 10]) == BACKGROUND


def test_decoded_frames_show_the_flash_colour(flash_dir):
    rec = next(iter(load_videos(flash_dir).values()))
    ev = flash_event(rec)
    clip = VideoService("cpu", backend="pyav").sample(str(rec.path), FramePolicy(fps=2.0, min_frames=2, max_frames=64))
    for frame, t in zip(clip.frames, clip.timestamps_s.tolist()):
        want = COLOURS[ev.colour] if ev.start_s <= t < ev.end_s else BACKGROUND
        assert np.abs(frame[20, 20].numpy().astype(int) - np.array(want)).max() < 30, t


def test_same_seed_same_dataset(tmp_path, flash_dir):
    make_dataset(tmp_path, num_videos=24, seed=3, width=128, height=96, fps=2, duration_s=16, eval_fraction=0.5,
                 task="flash")
    for name in ("videos.jsonl", "train.jsonl", "eval.jsonl"):
        a = [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]
        b = [json.loads(x) for x in (flash_dir / name).read_text().splitlines()]
        for x in a + b:
            x.pop("path", None), x.pop("video", None)
        assert a == b
