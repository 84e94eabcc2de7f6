"""The glimpse task: unique clips, a target only the pixels show, balanced answers, captions that never leak them."""
from collections import Counter

import av
import numpy as np
import pytest

from engine.data.dataset import load_rows, load_videos
from engine.data.frame_code import strip_height
from engine.data.glimpse import COLOURS, QUERY, fine_captions, target
from engine.data.near_duplicates import near_duplicates, signature
from engine.data.synthetic import make_dataset
from engine.errors import ConfigError
from engine.tools import CaptionClipIndex


@pytest.fixture(scope="module")
def glimpse(tmp_path_factory):
    root = tmp_path_factory.mktemp("glimpse")
    make_dataset(root, num_videos=24, seed=4, width=128, height=96, fps=2, duration_s=20, min_duration_s=12,
                 eval_fraction=0.5, task="glimpse")
    return root, load_videos(root), load_rows(root / "train.jsonl") + load_rows(root / "eval.jsonl")


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_clips_differ_in_length_and_pixels_and_no_held_out_clip_repeats_a_training_one(glimpse):
    _, records, rows = glimpse
    assert len({r.duration_s for r in records.values()}) > 3
    assert all(12 <= r.duration_s <= 20 for r in records.values())
    train = {str(r.video) for r in rows if r.split == "train"}
    held = {str(r.video) for r in rows if r.split == "eval"}
    assert near_duplicates(held, train) == []
    sigs = np.stack([signature(r.path) for r in records.values()])
    dist = np.abs(sigs[:, None] - sigs[None]).mean(axis=(2, 3, 4, 5))
    assert dist[~np.eye(len(sigs), dtype=bool)].min() > 10  # every pair of clips is far apart by pixels


def test_the_target_shows_its_colour_in_its_box_only_while_it_lasts(glimpse):
    _, records, _ = glimpse
    for rec in list(records.values())[:6]:
        ev = target(rec)
        frames = decode(rec.path)
        assert len(frames) == rec.num_frames
        scene_h = rec.height - strip_height(rec.height)
        cx, cy = int(ev.x_from * rec.width), int(ev.y * scene_h)
        want = np.array(COLOURS[ev.colour], dtype=float)
        for i, frame in enumerate(frames):
            t = i / rec.fps
            inside = ev.start_s <= t < ev.end_s
            centre = frame[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3).astype(float).mean(axis=0)
            if inside:
                assert np.abs(centre - want).max() < 30, (rec.video_id, i)
            scene = frame[:scene_h].astype(int)
            saturated = (scene.max(axis=2) - scene.min(axis=2) > 80).mean()
            assert (saturated > 0.05) == inside, (rec.video_id, i)  # the box is the only colour in the clip
            if inside:
                assert saturated < 0.6  # a part of the scene, never all of it


def test_questions_are_balanced_and_captions_never_name_the_answer(glimpse):
    _, records, rows = glimpse
    for split in ("train", "eval"):
        mcq = [r for r in rows if r.split == split and r.kind == "mcq"]
        grounding = [r for r in rows if r.split == split and r.kind == "grounding"]
        assert len(grounding) == 3 and len(mcq) == 9  # one clip in four asks when, the rest which colour
        letters = Counter(r.answer for r in mcq)
        assert max(letters.values()) - min(letters.values()) <= 1
        colours = Counter(target(records[r.video_id]).colour for r in rows if r.split == split)
        assert set(colours) == set(COLOURS) and max(colours.values()) - min(colours.values()) <= 1
        for r in mcq:
            assert r.options[ord(r.answer) - 65] == target(records[r.video_id]).colour
            assert sorted(r.options) == sorted(COLOURS)
        for r in grounding:
            ev = target(records[r.video_id])
            assert r.answer_span_s == (ev.start_s, ev.end_s) and 2 <= ev.end_s - ev.start_s <= 4
    assert len({tuple(r.options) for r in rows if r.kind == "mcq"}) > 4  # options shuffled per row
    for rec in records.values():
        coarse = {w for s in rec.segments for w in s.caption.split()}
        assert not coarse & set(COLOURS)
        named = [c for _, c in fine_captions(rec) if target(rec).colour in c]
        assert len(named) == int(target(rec).end_s - target(rec).start_s)


def test_retrieval_finds_the_target_and_distractors_happen_elsewhere(glimpse):
    _, records, _ = glimpse
    index = CaptionClipIndex(records)
    for rec in records.values():
        ev = target(rec)
        best = index.rank(rec.video_id, QUERY, 3)[0]
        assert best.start_s < ev.end_s and best.end_s > ev.start_s
        sweeps = [e for e in rec.events if e.kind == "sweep"]
        assert 1 <= len(sweeps) <= 3
        assert all(s.end_s <= ev.start_s or s.start_s >= ev.end_s for s in sweeps)


def test_a_clip_length_range_the_task_cannot_hold_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="min_duration_s"):
        make_dataset(tmp_path, num_videos=2, duration_s=20, min_duration_s=30, task="glimpse")
