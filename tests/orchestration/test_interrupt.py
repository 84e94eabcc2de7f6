"""Ctrl-C during `vthink train`: the step under way finishes, a checkpoint is written, one line says where and how to
go on, the exit status is 130 and no traceback is printed; --resume continues from that step."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ctrl_c_checkpoints_the_finished_step_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    common = [sys.executable, "-m", "engine.cli", "train", f"data.dir={tmp_path / 'data'}", "data.num_videos=4",
              "data.duration_s=4", "video.fps=1", "video.min_frames=2", "video.max_frames=4",
              "video.max_pixels=12544", "rollout.group_size=2", "rollout.max_new_tokens=8",
              "trainer.prompts_per_step=2", "sft.steps=0", "ray.rollout_workers=1", "ray.learners=1",
              f"trainer.output_dir={run}"]
    args = common + ["trainer.steps=40"]
    # Its own session: the signal goes to the whole process group, as a terminal's Ctrl-C does.
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step 2/"):
            os.killpg(proc.pid, signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(lines)
    out, err = proc.communicate(timeout=300)
    out = "".join(lines) + out
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
