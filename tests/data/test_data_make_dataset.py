"""make_dataset: argument checking, dataset structure, splits, question well-formedness, progress, CLI."""
import json

import pytest

from engine.data.dataset import load_rows, load_split, load_videos
from engine.data.schema import parse_span
from engine.data.synthetic import COLOURS, SHAPES, make_dataset
from engine.errors import ConfigError


@pytest.mark.parametrize("kwargs, key", [
    ({"width": 161}, "width"),
    ({"height": 119}, "height"),
    ({"width": 100}, "width"),
    ({"height": 32}, "height"),
    ({"width": 160.0}, "width"),
    ({"codec": "hevc"}, "codec"),
    ({"fps": 0}, "fps"),
    ({"fps": float("nan")}, "fps"),
    ({"duration_s": 1.0}, "duration_s"),
    ({"duration_s": 2000.0}, "duration_s"),  # 16000 frames: more than the index code holds
    ({"num_videos": 0}, "num_videos"),
    ({"num_videos": True}, "num_videos"),
    ({"seed": -1}, "seed"),
    ({"eval_fraction": 1.5}, "eval_fraction"),
])
def test_bad_arguments_raise_naming_the_key(tmp_path, kwargs, key):
    with pytest.raises(ConfigError) as e:
        make_dataset(tmp_path, **kwargs)
    assert e.value.key == key
    assert not (tmp_path / "videos.jsonl").exists()


def test_odd_size_error_suggests_even_sizes(tmp_path):
    with pytest.raises(ConfigError, match="even.*160 or 162"):
        make_dataset(tmp_path, width=161)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn_struct")
    calls = []
    paths = make_dataset(out, num_videos=8, seed=2, fps=4.0, duration_s=6.0, eval_fraction=0.25,
                         progress=lambda i, n, rec: calls.append((i, n, rec.video_id)))
    return paths, calls


def test_files_splits_and_progress(made):
    paths, calls = made
    assert [c[:2] for c in calls] == [(i, 8) for i in range(8)]
    videos = load_videos(paths.dir)
    assert list(videos) == [c[2] for c in calls]
    train, eval_ = load_rows(paths.train_jsonl), load_rows(paths.eval_jsonl)
    train_v, eval_v = {r.video_id for r in train}, {r.video_id for r in eval_}
    assert len(eval_v) == 2 and len(train_v) == 6 and not train_v & eval_v  # split by video
    assert all(r.split == "train" for r in train) and all(r.split == "eval" for r in eval_)
    assert len({r.id for r in train + eval_}) == len(train + eval_)
    rows, vids = load_split(paths.dir, "eval")
    assert len(rows) == len(eval_) and vids == videos
    # Paths in the files are relative to the dataset dir and resolve to the files on load.
    for line in paths.videos_jsonl.read_text().splitlines():
        assert json.loads(line)["path"].startswith("videos/")
    assert all(r.video == videos[r.video_id].path and r.video.is_file() for r in train + eval_)


def test_records_are_consistent(made):
    paths, _ = made
    for rec in load_videos(paths.dir).values():
        assert rec.num_frames == 24 and rec.duration_s == 6.0 and (rec.width, rec.height) == (160, 120)
        assert 2 <= len(rec.segments) <= 4 and len(rec.events) == len(rec.segments)
        assert rec.segments[0].start_s == 0 and rec.segments[-1].end_s == rec.duration_s
        for a, b in zip(rec.segments, rec.segments[1:]):
            assert a.end_s == b.start_s and b.start_s == int(b.start_s)  # contiguous, on whole seconds
        assert rec.events[0].kind == "appear"
        for seg, ev in zip(rec.segments, rec.events):
            assert ev.start_s == seg.start_s and ev.shape in seg.caption
            assert ev.colour in seg.caption and ev.colour in COLOURS and ev.shape in SHAPES
        shapes = [ev.shape for ev in rec.events if ev.kind == "appear"]
        assert len(shapes) == len(set(shapes))  # one object per shape: questions name shapes unambiguously


def test_questions_are_well_formed(made):
    paths, _ = made
    rows = load_rows(paths.train_jsonl) + load_rows(paths.eval_jsonl)
    videos = load_videos(paths.dir)
    mcq = [r for r in rows if r.kind == "mcq"]
    grounding = [r for r in rows if r.kind == "grounding"]
    assert len(mcq) >= 2 * len(videos) and len(grounding) >= len(videos)
    for r in mcq:
        assert len(r.options) == 4 and len(set(r.options)) == 4 and r.answer in "ABCD"
        assert r.answer_span_s is None
    assert len({r.answer for r in mcq}) == 4  # options really are shuffled
    for r in grounding:
        rec = videos[r.video_id]
        assert parse_span(r.answer) == r.answer_span_s  # spans fall on whole seconds here
        assert (r.answer_span_s[0], r.answer_span_s[1]) in [(s.start_s, s.end_s) for s in rec.segments]
        assert r.question.startswith("When does the ")
    # An MCQ answer checked against the captions rather than the events.
    for r in mcq:
        if r.question == "Which shape appears first?":
            assert videos[r.video_id].segments[0].caption.split()[2] == r.options[r.answer_index]


def test_cli_writes_a_dataset_and_reports_bad_keys(tmp_path, capsys):
    from engine.cli import main

    args = [f"data.dir={tmp_path / 'd'}", "data.num_videos=2", "data.duration_s=3", "data.codec=mjpeg"]
    assert main(["make-data", *args]) == 0
    assert "wrote 2 mjpeg videos" in capsys.readouterr().out
    assert len(load_videos(tmp_path / "d")) == 2
    assert main(["make-data", f"data.dir={tmp_path / 'e'}", "data.width=99"]) == 2  # odd width
    assert "data.width" in capsys.readouterr().err
    assert main(["make-data", f"data.dir={tmp_path / 'f'}", "data.width=100"]) == 2  # below the generator's minimum
    assert "width" in capsys.readouterr().err
