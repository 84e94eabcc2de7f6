"""Row schema and JSONL loading: round trips, relative paths, and typed errors that name file and line."""
import json
from pathlib import Path

import pytest

from engine.data.dataset import load_rows, load_split, load_videos
from engine.data.schema import DatasetError, Event, QARow, Segment, VideoRecord, format_span, parse_span
from engine.errors import VthinkError


def _record(root: Path) -> VideoRecord:
    ev = Event("appear", 0.0, 2.0, 0, "circle", "red", 0.5, 0.2, 0.8, "left", "right")
    ch = Event("change_colour", 2.0, 2.0, 0, "circle", "blue", 0.5, 0.8, 0.8, "right", "right", from_colour="red")
    return VideoRecord("v0", root / "videos" / "v0.mp4", "h264", 8.0, 32, 160, 120, 4.0,
                       [Segment(0.0, 2.0, "a red circle appears at the left and moves right"),
                        Segment(2.0, 4.0, "the red circle turns blue")], [ev, ch], seed=1)


def _rows(root: Path) -> list[QARow]:
    v = root / "videos" / "v0.mp4"
    return [QARow("v0-q00", "v0", v, "mcq", "What colour?", ["red", "blue", "green", "cyan"], "B", None, "train"),
            QARow("v0-q01", "v0", v, "grounding", "When?", [], "00:02-00:04", (2.0, 4.0), "train")]


def _write(path: Path, objs) -> None:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))


def test_round_trip_with_relative_paths(tmp_path):
    rec = _record(tmp_path)
    d = rec.to_json(tmp_path)
    assert d["path"] == "videos/v0.mp4"
    assert VideoRecord.from_json(json.loads(json.dumps(d)), tmp_path) == rec
    assert rec.events[0].direction == "right" and rec.events[1].direction is None
    for row in _rows(tmp_path):
        d = row.to_json(tmp_path)
        assert d["video"] == "videos/v0.mp4"
        assert QARow.from_json(json.loads(json.dumps(d)), tmp_path) == row


def test_loaders_resolve_against_the_dataset_dir(tmp_path):
    _write(tmp_path / "videos.jsonl", [_record(tmp_path).to_json(tmp_path)])
    _write(tmp_path / "train.jsonl", [r.to_json(tmp_path) for r in _rows(tmp_path)])
    videos = load_videos(tmp_path)
    assert videos["v0"].path == (tmp_path / "videos" / "v0.mp4").resolve()
    rows = load_rows(tmp_path / "train.jsonl")
    assert [r.answer for r in rows] == ["B", "00:02-00:04"] and rows[0].answer_index == 1
    assert rows[1].video == videos["v0"].path


def test_grounding_span_is_parsed_when_absent(tmp_path):
    r = QARow("x", "v", tmp_path / "v.mp4", "grounding", "When?", [], "01:05-01:10", None, "eval")
    assert r.answer_span_s == (65.0, 70.0)
    assert format_span(65.0, 70.9) == "01:05-01:10"
    assert parse_span(format_span(3600.0, 3601.0)) == (3600.0, 3601.0)


@pytest.mark.parametrize("text", ["", "00:05", "0:5-0:6", "00:61-01:00", "00:05-00:04", "ab:cd-00:01"])
def test_parse_span_rejects(text):
    with pytest.raises(DatasetError):
        parse_span(text)


def _good_row(tmp_path):
    return _rows(tmp_path)[0].to_json(tmp_path)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "{not json", "not valid JSON"),
    (lambda d: {k: v for k, v in d.items() if k != "answer"}, "missing key"),
    (lambda d: {**d, "kind": "essay"}, "kind must be one of"),
    (lambda d: {**d, "answer": "E"}, "answer among"),
    (lambda d: {**d, "split": "test"}, "split must be one of"),
    (lambda d: {**d, "options": "A,B"}, "options must be a list"),
    (lambda d: {**d, "kind": "grounding", "options": [], "answer": "soon"}, "MM:SS-MM:SS"),
    (lambda d: {**d, "answer_span_s": [1.0]}, "answer_span_s"),
    (lambda d: {**d, "video": ""}, "path must be"),
    (lambda d: [1, 2], "JSON object"),
])
def test_malformed_row_names_file_and_line(tmp_path, mutate, message):
    good = _good_row(tmp_path)
    bad = mutate(dict(good))
    _write(tmp_path / "rows.jsonl", [good, "", {**good, "id": "other"}, bad])  # bad row on line 4
    with pytest.raises(DatasetError, match=message) as e:
        load_rows(tmp_path / "rows.jsonl")
    assert f"{tmp_path / 'rows.jsonl'}:4:" in str(e.value)
    assert isinstance(e.value, VthinkError)


def test_malformed_video_records(tmp_path):
    good = _record(tmp_path).to_json(tmp_path)
    for bad, message in [({**good, "fps": "fast"}, "bad value"), ({**good, "fps": 0}, "must be positive"),
                         ({**good, "segments": [{"start_s": 2, "end_s": 1, "caption": "x"}]}, "start_s < end_s"),
                         ({**good, "events": [{**good["events"][0], "kind": "explode"}]}, "event kind"),
                         ({**good, "segments": None}, "must be lists")]:
        _write(tmp_path / "videos.jsonl", [bad])
        with pytest.raises(DatasetError, match=message) as e:
            load_videos(tmp_path)
        assert "videos.jsonl:1:" in str(e.value)


def test_duplicates_missing_files_and_unknown_videos(tmp_path):
    good = _good_row(tmp_path)
    _write(tmp_path / "train.jsonl", [good, good])
    with pytest.raises(DatasetError, match=r"train.jsonl:2: duplicate id 'v0-q00' \(first on line 1\)"):
        load_rows(tmp_path / "train.jsonl")
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_rows(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_videos(tmp_path / "empty_dir")
    _write(tmp_path / "train.jsonl", [{**good, "video_id": "ghost"}])
    _write(tmp_path / "videos.jsonl", [_record(tmp_path).to_json(tmp_path)])
    with pytest.raises(DatasetError, match="unknown video 'ghost'"):
        load_split(tmp_path, "train")
    with pytest.raises(DatasetError, match="split"):
        load_split(tmp_path, "test")
