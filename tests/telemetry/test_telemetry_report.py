"""Metrics log (JSONL + TensorBoard), phase timers, and the end-of-run table and plot."""
import time

from engine.telemetry.metrics import MetricsLog, read_metrics
from engine.telemetry.phases import PhaseTimer
from engine.telemetry.report import plot_rewards, summary_table

HISTORY = [
    {"step": i, "reward_mean": 0.1 * i, "accuracy": 0.05 * i, "format": 0.5, "kl": 0.01 * (3 - i), "grad_norm": 1.0}
    for i in range(4)
]


def test_metrics_jsonl_and_tensorboard(tmp_path):
    log = MetricsLog(tmp_path, total_steps=4)
    for m in HISTORY:
        log.write(m)
    line = log.progress_line(3, HISTORY[3])
    log.close()
    assert read_metrics(tmp_path / "metrics.jsonl") == HISTORY
    assert line.startswith("step 4/4 | reward 0.300 | acc 0.150")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    rewards = [(e.step, round(e.value, 6)) for e in events.Scalars("reward_mean")]
    assert rewards == [(i, round(0.1 * i, 6)) for i in range(4)]


def test_append_keeps_earlier_steps(tmp_path):
    MetricsLog(tmp_path, 4, tensorboard=False).write(HISTORY[0])
    resumed = MetricsLog(tmp_path, 4, tensorboard=False, append=True)
    resumed.write(HISTORY[1])
    assert [m["step"] for m in read_metrics(tmp_path / "metrics.jsonl")] == [0, 1]


def test_phase_timer_accumulates_and_resets():
    timer = PhaseTimer()
    for _ in range(2):
        with timer.phase("rollout"):
            time.sleep(0.02)
    with timer.phase("update"):
        pass
    times = timer.pop()
    assert set(times) == {"time_rollout_s", "time_update_s"}
    assert times["time_rollout_s"] >= 0.04
    assert timer.pop() == {}


def test_phases_are_torch_profiler_ranges_and_profiled_records_the_second_call(tmp_path, monkeypatch):
    import json
    from collections import defaultdict

    import torch

    from engine.telemetry import phases

    timer = PhaseTimer()
    with torch.profiler.profile() as prof:
        with timer.phase("prefill"):
            torch.ones(8, 8) @ torch.ones(8, 8)
    assert "vthink/prefill" in {e.key for e in prof.key_averages()}

    monkeypatch.setenv(phases.PROFILE_ENV, str(tmp_path / "profile"))
    monkeypatch.setattr(phases, "_calls", defaultdict(int))
    for call in range(3):
        with phases.profiled("learner"):
            with timer.phase("optimizer"):
                torch.ones(16, 16) @ torch.ones(16, 16)
        written = sorted(p.suffix for p in (tmp_path / "profile").glob("learner-*")) if call else []
        assert written == ([] if call == 0 else [".json", ".txt"])  # the 2nd call only (the 1st is warm-up)
    trace = json.loads(next((tmp_path / "profile").glob("learner-*.json")).read_text())
    assert any(e.get("name") == "vthink/optimizer" for e in trace["traceEvents"])
    assert "aten::mm" in next((tmp_path / "profile").glob("learner-*.txt")).read_text()


def test_summary_table_and_plot(tmp_path):
    table = summary_table(HISTORY)
    row = next(r for r in table.splitlines() if r.startswith("reward_mean"))
    assert row.split()[1:] == ["0.000", "0.300", "0.300"]
    kl_row = next(r for r in table.splitlines() if r.startswith("kl"))
    assert kl_row.split()[-1] == "0.000"  # best KL is the lowest
    png = plot_rewards(HISTORY, tmp_path / "reward.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
