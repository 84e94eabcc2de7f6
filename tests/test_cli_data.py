"""The user's-data path as a user drives it: `vthink data check`, `vthink eval` with on_bad_row=skip on a Video-R1 file
over real clips (a missing, a corrupt and a field-less row among them), `vthink config show`."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from engine.cli import main
from engine.config import load_config
from engine.data.synthetic import make_dataset


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def user_data(tmp_path_factory) -> Path:
    """The user's folder: clips/ with real videos, and a Video-R1 JSON naming them (plus three bad rows)."""
    root = tmp_path_factory.mktemp("user")
    made = make_dataset(tmp_path_factory.mktemp("render"), num_videos=3, seed=5, width=128, height=64, duration_s=2.0)
    (root / "clips").mkdir()
    for i, v in enumerate(sorted((made.dir / "videos").iterdir())):
        shutil.copy(v, root / "clips" / f"clip{i}.mp4")
    (root / "clips" / "broken.mp4").write_bytes(b"RIFF....not a video at all" * 64)

    def row(pid, path, ptype="multiple choice", **kw):
        r = {"problem_id": pid, "problem": "What colour is the shape?", "data_type": "video", "problem_type": ptype,
             "options": ["A. red", "B. blue", "C. green", "D. yellow"], "solution": "<answer>A</answer>",
             "path": f"clips/{path}", "data_source": "mine"}
        r.update(kw)
        return r

    rows = [row(1, "clip0.mp4"), row(2, "clip1.mp4"),
            row(3, "clip2.mp4", "numerical", options=[], solution="<think>two</think><answer>2</answer>"),
            row(4, "gone.mp4"), row(5, "broken.mp4"), {"problem_id": 6, "path": "clips/clip0.mp4"}]
    (root / "val.json").write_text(json.dumps(rows, indent=1))
    (root / "all_bad.json").write_text(json.dumps([row(7, "gone.mp4"), row(8, "broken.mp4")]))
    return root


def test_data_check_names_every_bad_row_and_exits_2(user_data, capsys):
    before = tree_digest(user_data)
    rc = main(["data", "check", f"data.val_files=[{user_data / 'val.json'}]", f"data.video_root={user_data}"])
    out = capsys.readouterr().out
    assert rc == 2
    assert f"{user_data / 'val.json'}:index 3 id=4: video not found" in out
    assert f"{user_data / 'val.json'}:index 4 id=5: video does not decode" in out
    assert f"{user_data / 'val.json'}:index 5 id=6: missing field" in out
    assert "bad rows by reason: " in out and "video not found 1" in out
    assert "usable rows: 0 train, 3 held-out; 3 bad" in out
    rc = main(["data", "check", f"data.val_files=[{user_data / 'val.json'}]", f"data.video_root={user_data}",
               "data.on_bad_row=skip"])
    assert rc == 0
    assert tree_digest(user_data) == before  # checking reads, never writes


def test_eval_skips_bad_rows_and_refuses_when_none_is_left(user_data, tmp_path, capsys):
    before = tree_digest(user_data)
    out_dir = tmp_path / "run"
    common = [f"data.video_root={user_data}", f"trainer.output_dir={out_dir}", "rollout.max_new_tokens=8"]
    assert main(["eval", f"data.val_files=[{user_data / 'val.json'}]", *common]) == 2  # on_bad_row=error
    assert not (out_dir / "eval.json").exists()
    assert main(["eval", f"data.val_files=[{user_data / 'val.json'}]", "data.on_bad_row=skip", *common]) == 0
    result = json.loads((out_dir / "eval.json").read_text())
    assert result["questions"] == 2  # the two usable multiple-choice rows
    assert result["per_kind"]["mcq"]["n"] == 2 and result["per_kind"]["numerical"]["n"] == 1
    bad = [json.loads(x) for x in (out_dir / "bad_rows.jsonl").read_text().splitlines()]
    assert sorted(b["row_id"] for b in bad) == ["4", "5", "6"]
    assert main(["eval", f"data.val_files=[{user_data / 'all_bad.json'}]", "data.on_bad_row=skip", *common]) == 2
    assert "no usable held-out row" in capsys.readouterr().err
    assert tree_digest(user_data) == before  # the user's folder is untouched


def test_config_show_prints_every_default_and_round_trips(tmp_path, capsys):
    assert main(["config", "show", "trainer.steps=7", "data.train_files=[a.json]"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["trainer"]["steps"] == 7 and shown["data"]["train_files"] == ["a.json"]
    assert shown["data"]["on_bad_row"] == "error" and shown["ray"]["learners"] == "auto"
    (tmp_path / "shown.yaml").write_text(yaml.safe_dump(shown))
    assert load_config(tmp_path / "shown.yaml").to_dict() == shown


def test_help_says_where_outputs_go(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "trainer.output_dir" in out and "eval.json" in out and "bad_rows.jsonl" in out


def test_train_refuses_bad_rows_and_leaves_no_cluster_behind(user_data, tmp_path, capsys):
    """`vthink train` starts Ray and its actors while it checks the rows: bad rows still exit 2, and the cluster
    it began is torn down."""
    import ray

    rc = main(["train", f"data.train_files=[{user_data / 'val.json'}]", f"data.video_root={user_data}",
               "sft.steps=0", "ray.rollout_workers=1", "ray.learners=1", f"trainer.output_dir={tmp_path / 'run'}"])
    assert rc == 2
    assert "id=4: video not found" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_data_check_writes_nothing_and_names_a_missing_folder_once(user_data, tmp_path, capsys):
    missing = tmp_path / "no_such_data"
    assert main(["data", "check", f"data.dir={missing}"]) == 0
    assert "holds no dataset yet" in capsys.readouterr().out and not missing.exists()  # nothing rendered
    wrong_root = tmp_path / "wrong_root"
    rc = main(["data", "check", f"data.val_files=[{user_data / 'all_bad.json'}]", f"data.video_root={wrong_root}"])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out.count(f"folder not found: {wrong_root}") == 1  # the folder, named once
    # no row would be usable, so skipping is not suggested as a way out
    assert "would not help" in captured.err and "would go on" not in captured.err
