"""`vthink view` renders a run directory into one HTML page; `vthink bench` finds the bench scripts."""
import json

from engine.cli import bench_dir, main
from engine.telemetry.metrics import MetricsLog


def test_view_writes_a_page_with_plot_steps_and_config(tmp_path, capsys):
    log = MetricsLog(tmp_path, 3, tensorboard=False)
    for step in range(3):
        log.write({"step": step, "reward_mean": 0.25 * step, "accuracy": 0.1, "format": 0.5, "loss": 0.01})
    (tmp_path / "config.json").write_text(json.dumps({"rollout": {"group_size": 4}}))
    assert main(["view", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert page.count("<tr>") == 4  # header + 3 steps
    assert "<td>0.5</td>" in page and "group_size" in page
    assert "report.html" in capsys.readouterr().out


def test_view_reports_skipped_rows_and_failed_prompts(tmp_path):
    log = MetricsLog(tmp_path, 1, tensorboard=False)
    log.write({"step": 0, "reward_mean": 0.5, "accuracy": 0.5, "format": 1.0, "loss": 0.0})
    (tmp_path / "data.json").write_text(json.dumps({
        "train_rows": 9, "eval_rows": 3, "bad_rows": 5, "bad_by_reason": {"video does not decode": 4, "missing field": 1},
        "failed_prompts": 1, "failures": ["q7: <script>alert(1)</script>.mp4: truncated file"]}))
    assert main(["view", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "9 training, 3 held-out; 5 bad rows skipped" in page
    assert "video does not decode: 4" in page and "missing field: 1" in page
    assert "prompts that failed during the run: 1" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page


def test_view_and_bench_reject_what_is_not_there(tmp_path, capsys):
    assert main(["view", str(tmp_path / "nope")]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
    assert main(["bench", "no_such_bench"]) == 2
    err = capsys.readouterr().err
    assert "kernels" in err and "native" in err
    assert (bench_dir() / "native.py").is_file()
