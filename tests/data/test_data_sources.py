"""Bring-your-own-data: every layout and file type, every problem type, every bad-row class, the bad-row policy,
and the synthetic generator's refusal to write into a user's folder. Videos are real H.264 files."""
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import ConfigError, load_config
from engine.data.schema import DatasetError
from engine.data.sources import DataCheckError, load_data, prepare
from engine.data.synthetic import ensure_dataset, make_dataset


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A folder clips/ with two real videos (a.mp4, b.mp4) and a corrupt one (bad.mp4)."""
    root = tmp_path_factory.mktemp("byod")
    made = make_dataset(root / "synthetic", num_videos=2, seed=3, width=128, height=64, duration_s=2.0)
    clips = root / "clips"
    clips.mkdir()
    videos = sorted((made.dir / "videos").iterdir())
    shutil.copy(videos[0], clips / "a.mp4")
    shutil.copy(videos[1], clips / "b.mp4")
    (clips / "bad.mp4").write_bytes(b"\x00\x01 definitely not a video" * 100)
    return clips


def r1(pid, path="a.mp4", **kw):
    row = {"problem_id": pid, "problem": "How many shapes appear?", "data_type": "video",
           "problem_type": "multiple choice", "options": ["A. one", "B. two", "C. three"],
           "solution": "<answer>B</answer>", "path": path, "data_source": "test"}
    row.update(kw)
    return row


def cfg_for(tmp_path, clips, train=(), val=(), **data):
    cfg = load_config(None, [f"trainer.output_dir={tmp_path / 'run'}"])
    return replace(cfg, data=replace(cfg.data, train_files=[str(p) for p in train], val_files=[str(p) for p in val],
                                     video_root=str(clips), **data))


def write(path: Path, rows) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_video_r1_rows_of_every_problem_type(tmp_path, clips):
    rows = [
        r1(1),
        r1(2, problem_type="numerical", options=[], solution="<think>count</think><answer>3</answer>"),
        r1(3, problem_type="OCR", options=[], solution="<answer>STOP here</answer>"),
        r1(4, problem_type="free-form", options=[], solution="<answer>a red circle moves left</answer>"),
        r1(5, problem_type="regression", options=[], solution="<answer>12.5</answer>"),
        r1(6, solution="<think>the second one</think>\n<answer>B. two</answer>", process=None),
    ]
    f = write(tmp_path / "r1.json", rows)
    data = load_data(cfg_for(tmp_path, clips, train=[f]).data)
    assert data.bad == []
    by_id = {r.id: r for r in data.train}
    assert [by_id[str(i)].kind for i in range(1, 6)] == ["mcq", "numerical", "ocr", "free-form", "regression"]
    assert by_id["1"].options == ["one", "two", "three"] and by_id["1"].answer == "B"
    assert by_id["2"].answer == "3" and by_id["2"].reasoning == "<think>count</think>"
    assert by_id["6"].answer == "B" and by_id["6"].reasoning == "<think>the second one</think>"
    assert by_id["1"].video == (clips / "a.mp4").resolve()
    assert by_id["1"].source.endswith("r1.json:index 0")


def test_video_thinker_process_field_is_the_sft_target(tmp_path, clips):
    f = write(tmp_path / "vt.jsonl", [r1(1, process="<time>00:00-00:01</time> <caption>c</caption> <think>t</think>")])
    (row,) = load_data(cfg_for(tmp_path, clips, train=[f]).data).train
    assert row.reasoning.startswith("<time>00:00-00:01</time>")


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_every_file_type_loads(tmp_path, clips, suffix):
    f = write(tmp_path / f"rows{suffix}", [r1(1), r1(2, path="b.mp4")])
    data = load_data(cfg_for(tmp_path, clips, train=[f]).data)
    assert [r.id for r in data.train] == ["1", "2"] and not data.bad


def test_qa_jsonl_with_renamed_fields_and_inferred_kinds(tmp_path, clips):
    rows = [
        {"clip": "a.mp4", "q": "Which colour?", "choices": ["red", "blue"], "gold": "blue"},
        {"clip": "b.mp4", "q": "How many?", "gold": 4},
        {"clip": "a.mp4", "q": "When does it move?", "gold": "00:01-00:02"},
        {"clip": "b.mp4", "q": "Describe it.", "gold": "a blue square"},
    ]
    f = write(tmp_path / "qa.jsonl", rows)
    cfg = cfg_for(tmp_path, clips, train=[f], format="qa_jsonl")
    cfg = replace(cfg, data=replace(cfg.data, fields=replace(cfg.data.fields, video="clip", question="q",
                                                             options="choices", answer="gold")))
    data = load_data(cfg.data)
    assert not data.bad
    assert [(r.kind, r.answer) for r in data.train] == [("mcq", "B"), ("numerical", "4"),
                                                        ("grounding", "00:01-00:02"), ("free-form", "a blue square")]
    assert data.train[2].answer_span_s == (1.0, 2.0)


def test_vthink_files_keep_their_video_records(tmp_path):
    root = ensure_dataset(replace(load_config().data, dir=str(tmp_path / "syn"), num_videos=4), log=lambda _: None)
    cfg = load_config(None, [f"data.train_files=[{root / 'train.jsonl'}]", f"data.val_files=[{root / 'eval.jsonl'}]"])
    data = load_data(cfg.data)
    assert data.train and data.eval and not data.bad
    assert all(r.video_id in data.records for r in data.train + data.eval)
    assert {r.split for r in data.eval} == {"eval"}


def test_every_bad_row_class_is_named(tmp_path, clips):
    lines = [
        json.dumps(r1(1)),
        "{not json",
        json.dumps({k: v for k, v in r1(3).items() if k != "solution"}),  # field-less
        json.dumps(r1(4, path="missing.mp4")),
        json.dumps(r1(5, path="bad.mp4")),
        json.dumps(r1(6, solution="<answer>E</answer>")),
        json.dumps(r1(7, data_type="image", path="a.mp4")),
        json.dumps(r1(8, problem_type="essay")),
        json.dumps(r1(1, path="b.mp4")),  # duplicate id
        json.dumps(r1(10, problem_type="numerical", options=[], solution="<answer>many</answer>")),
        json.dumps(["a", "list"]),
    ]
    f = write(tmp_path / "mixed.jsonl", lines)
    data = load_data(cfg_for(tmp_path, clips, train=[f]).data)
    assert [r.id for r in data.train] == ["1"]
    got = {(b.where, b.row_id, b.reason) for b in data.bad}
    assert got == {
        ("line 2", None, "not JSON"),
        ("line 3", "3", "missing field"),
        ("line 4", "4", "video not found"),
        ("line 5", "5", "video does not decode"),
        ("line 6", "6", "answer not among options"),
        ("line 7", "7", "unsupported data_type"),
        ("line 8", "8", "bad value"),
        ("line 9", "1", "duplicate id"),
        ("line 10", "10", "bad value"),
        ("line 11", None, "bad value"),
    }
    assert all(b.file == str(f) for b in data.bad)
    assert data.bad_counts()["bad value"] == 3


def test_bad_rows_refused_by_default_and_skipped_on_request(tmp_path, clips):
    f = write(tmp_path / "val.json", [r1(1), r1(2, path="missing.mp4"), {"problem_id": 3}])
    cfg = cfg_for(tmp_path, clips, val=[f])
    with pytest.raises(DataCheckError, match="video not found"):
        prepare(cfg, "eval", tmp_path / "run", log=lambda _: None)
    assert not (tmp_path / "run" / "bad_rows.jsonl").exists()
    logs = []
    data = prepare(replace(cfg, data=replace(cfg.data, on_bad_row="skip")), "eval", tmp_path / "run", logs.append)
    assert [r.id for r in data.eval] == ["1"]
    written = [json.loads(x) for x in (tmp_path / "run" / "bad_rows.jsonl").read_text().splitlines()]
    assert sorted((b["row_id"], b["reason"]) for b in written) == [("2", "video not found"), ("3", "missing field")]
    assert any("skipping 2 bad rows" in line for line in logs)


def test_no_usable_row_is_refused_even_when_skipping(tmp_path, clips):
    f = write(tmp_path / "allbad.json", [r1(1, path="bad.mp4"), r1(2, path="missing.mp4")])
    cfg = cfg_for(tmp_path, clips, val=[f], on_bad_row="skip")
    with pytest.raises(DataCheckError, match="no usable held-out row"):
        prepare(cfg, "eval", tmp_path / "run", log=lambda _: None)


def test_eval_without_val_files_uses_the_training_rows(tmp_path, clips):
    f = write(tmp_path / "train.json", [r1(1)])
    logs = []
    data = prepare(cfg_for(tmp_path, clips, train=[f]), "eval", None, logs.append)
    assert [r.id for r in data.eval] == ["1"] and any("no data.val_files" in line for line in logs)


def test_eval_checks_only_the_rows_it_scores(tmp_path, clips):
    train = write(tmp_path / "train.json", [r1(1), r1(2, path="missing.mp4")])
    val = write(tmp_path / "val.json", [r1(3)])
    cfg = cfg_for(tmp_path, clips, train=[train], val=[val])
    data = prepare(cfg, "eval", None, log=lambda _: None)  # the bad training row is not eval's business
    assert [r.id for r in data.eval] == ["3"] and data.bad == []
    with pytest.raises(DataCheckError, match="video not found"):
        prepare(cfg, "train", None, log=lambda _: None)


def test_missing_or_unknown_files_are_config_errors(tmp_path, clips):
    with pytest.raises(ConfigError, match=r"data.train_files\[0\]"):
        load_data(cfg_for(tmp_path, clips, train=[tmp_path / "nope.json"]).data)
    (tmp_path / "rows.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="unknown dataset file type"):
        load_data(cfg_for(tmp_path, clips, train=[tmp_path / "rows.csv"]).data)
    with pytest.raises(ConfigError, match="a folder"):
        load_data(cfg_for(tmp_path, clips, train=[clips]).data)


def test_list_overrides_are_yaml_flow_lists(tmp_path):
    cfg = load_config(None, ["data.train_files=[a.json,b.jsonl]", "data.format=video_r1"])
    assert cfg.data.train_files == ["a.json", "b.jsonl"] and cfg.data.format == "video_r1"
    with pytest.raises(ConfigError, match="data.on_bad_row"):
        load_config(None, ["data.on_bad_row=ignore"])


def test_synthetic_generator_never_writes_into_a_users_folder(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    (user / "videos").mkdir()
    (user / "videos" / "holiday.mp4").write_bytes(b"precious")
    cfg = replace(load_config().data, dir=str(user), num_videos=2)
    with pytest.raises(DatasetError, match="refusing to write"):
        ensure_dataset(cfg, log=lambda _: None)
    assert sorted(p.name for p in user.rglob("*")) == ["holiday.mp4", "notes.txt", "videos"]
    assert (user / "notes.txt").read_text() == "keep me"
    f = tmp_path / "rows.json"
    f.write_text("[]")
    with pytest.raises(DatasetError, match="is a file"):
        ensure_dataset(replace(cfg, dir=str(f)), log=lambda _: None)
    assert f.read_text() == "[]"
    # Its own earlier output is fine to regenerate over.
    again = replace(cfg, dir=str(tmp_path / "syn"))
    ensure_dataset(again, log=lambda _: None)
    make_dataset(tmp_path / "syn", num_videos=2)


def test_renamed_fields_mean_qa_jsonl_even_with_r1_like_columns(tmp_path, clips):
    f = write(tmp_path / "qa.jsonl", [{"problem": "How many?", "clip": "a.mp4", "solution": "3", "extra": 1}])
    cfg = cfg_for(tmp_path, clips, train=[f])
    cfg = replace(cfg, data=replace(cfg.data, fields=replace(cfg.data.fields, video="clip", question="problem",
                                                             answer="solution")))
    data = load_data(cfg.data)
    assert not data.bad and [(r.kind, r.answer) for r in data.train] == [("numerical", "3")]


def test_values_that_raise_inside_a_row_are_bad_rows(tmp_path, clips):
    good = {"id": "g", "video_id": "v", "video": "a.mp4", "kind": "grounding", "question": "When?", "options": [],
            "answer": "00:01-00:02", "split": "train"}
    rows = [good, dict(good, id="span", answer_span_s=["x", 2]), dict(good, id="nul", video="a\x00.mp4")]
    f = write(tmp_path / "vt.jsonl", rows)
    data = load_data(cfg_for(tmp_path, clips, train=[f]).data)
    assert [r.id for r in data.train] == ["g"]
    assert sorted((b.row_id, b.reason) for b in data.bad) == [("nul", "bad value"), ("span", "bad value")]


def test_rows_keep_the_sources_own_columns_for_reward_fn(tmp_path, clips):
    from engine.data.schema import QARow

    numerical = r1(2, problem_type="numerical", options=[], solution="<answer>2</answer>")
    f = write(tmp_path / "r1.parquet", [r1(1, data_source="mine", difficulty=3), numerical])
    rows = {r.id: r for r in load_data(cfg_for(tmp_path, clips, train=[f]).data).train}
    assert rows["1"].fields["problem_type"] == "multiple choice" and rows["1"].fields["data_source"] == "mine"
    assert rows["1"].fields["difficulty"] == 3 and rows["2"].fields["problem_type"] == "numerical"
    again = QARow.from_json(rows["1"].to_json())  # train.jsonl / eval.jsonl keep them
    assert again.fields == rows["1"].fields
