"""bench/gpu_check.py runs from the source tree: `--list` names every check, and without CUDA each is skipped."""
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, "bench/gpu_check.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_list_prints_one_check_per_line():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    proc = _run("--list")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and all(line.startswith("- ") for line in lines)
    assert [line[2:].split(":")[0] for line in lines] == list(gpu_check.CHECKS)
    for name in gpu_check.CHECKS:  # every check has its function
        assert callable(getattr(gpu_check, "check_" + name.replace("-", "_")))


def test_without_cuda_every_check_is_skipped():
    if torch.cuda.is_available():
        return
    proc = _run("--only", "learner-step", "preprocess")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["- learner-step: skipped (no CUDA device)", "- preprocess: skipped (no CUDA device)"]


def test_the_pack_fits_in_eight_minutes():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    assert sum(limit for _, limit in gpu_check.CHECKS.values()) <= 8 * 60
