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


def _pack():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    return gpu_check


def test_the_smoke_subset_fits_in_five_minutes():
    pack = _pack()
    assert set(pack.SMOKE) <= set(pack.CHECKS)
    assert sum(pack.CHECKS[name][1] for name in pack.SMOKE) <= 5 * 60


def test_an_all_skipped_pytest_run_is_a_failure():
    verdict = _pack().pytest_verdict
    assert verdict(0, "5 skipped in 0.31s") == "failed"
    assert verdict(0, "no tests ran in 0.01s") == "failed"
    assert verdict(1, "3 passed, 1 failed in 2.0s") == "failed"
    assert verdict(0, "12 passed, 2 skipped in 40.1s") == "passed"


def test_kernel_bench_fails_where_ours_is_slower_than_eager():
    import json

    verdict = _pack().bench_verdict
    rows = json.loads((ROOT / "bench" / "results" / "kernels-cpu-2core.json").read_text())["rows"]
    ours = [r for r in rows if r.get("variant", "").startswith("ours")]
    assert ours and verdict(rows) == ("passed", [])  # the committed CPU figures: ours beats eager everywhere
    slower = [dict(r, time_vs_eager=1.3) if r is ours[0] else r for r in rows]
    status, slow = verdict(slower)
    assert status == "failed" and len(slow) == 1 and "1.30x eager" in slow[0]
    assert verdict([])[0] == "failed"
