"""Ctrl-C during `vthink train` and `vthink sft`: the step under way finishes, a checkpoint is written, one line says where and how to
go on, the exit status is 130 and no traceback is printed; --resume continues from that step."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def interrupt_when(args: list[str], prefix: str) -> tuple[subprocess.Popen, str, str]:
    """Run `args`, send SIGINT to its process group when a stdout line starts with `prefix` (as a terminal's Ctrl-C
    does: the command runs in its own session), and return (the finished process, its stdout, its stderr)."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix):
            os.killpg(proc.pid, signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(lines)
    out, err = proc.communicate(timeout=300)
    return proc, "".join(lines) + out, err


def test_ctrl_c_checkpoints_the_finished_step_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    common = [sys.executable, "-m", "engine.cli", "train", f"data.dir={tmp_path / 'data'}", "data.num_videos=4",
              "data.duration_s=4", "video.fps=1", "video.min_frames=2", "video.max_frames=4",
              "video.max_pixels=12544", "rollout.group_size=2", "rollout.max_new_tokens=8",
              "trainer.prompts_per_step=2", "sft.steps=0", "ray.rollout_workers=1", "ray.learners=1",
              f"trainer.output_dir={run}"]
    proc, out, err = interrupt_when(common + ["trainer.steps=40"], "step 2/")
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    stopped = [x for x in out.splitlines() if x.startswith("interrupted at step ")]
    assert len(stopped) == 1 and "--resume" in stopped[0], out
    step = int(stopped[0].split()[3].rstrip(";"))
    assert step >= 2  # the step under way when Ctrl-C came was finished, not thrown away
    assert (run / "checkpoints" / f"step-{step:08d}" / "config.json").is_file()
    # the command it printed picks up from there (the run's own config.json, one more step)
    config = stopped[0].split("continue with: vthink train ")[1].split()[0]
    assert config == str(run / "config.json")
    resumed = subprocess.run([sys.executable, "-m", "engine.cli", "train", config, f"trainer.steps={step + 1}",
                              "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step}" in resumed.stdout and f"step {step + 1}/{step + 1}" in resumed.stdout


def test_ctrl_c_in_vthink_sft_checkpoints_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "engine.cli", "sft", f"data.dir={tmp_path / 'data'}", "data.num_videos=4",
            "data.duration_s=4", "video.fps=1", "video.min_frames=2", "video.max_frames=4", "video.max_pixels=12544",
            "sft.batch_size=2", "sft.lr=1e-4", "ray.rollout_workers=1", "ray.learners=1",
            f"trainer.output_dir={run}", "sft.steps=400"]
    proc, out, err = interrupt_when(args, "sft 1/400")  # SFT logs step 1, then every 25th
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    stopped = [x for x in out.splitlines() if x.startswith("interrupted at step ")]
    assert len(stopped) == 1, out
    step = int(stopped[0].split()[3].rstrip(";"))
    assert 1 <= step < 400
    assert (run / "sft" / "checkpoints" / f"step-{step:08d}").is_dir()
    assert not (run / "sft" / "config.json").exists()  # no half-trained policy that looks finished
    logged = [json.loads(x)["step"] for x in (run / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, step + 1))
    command = stopped[0].split("continue with: ")[1].split()
    assert command[:2] == ["vthink", "sft"] and command[-1] == "--resume" and command[2] == str(run / "config.json")
    resumed = subprocess.run([sys.executable, "-m", "engine.cli", "sft", command[2], f"sft.steps={step + 1}",
                              "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step}" in resumed.stdout and f"sft {step + 1}/{step + 1}" in resumed.stdout
    assert (run / "sft" / "config.json").is_file()
    logged = [json.loads(x)["step"] for x in (run / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, step + 2))
