"""Per-step metrics: appended to a JSONL file and summarised on one progress line."""
from __future__ import annotations

import json
import time
from pathlib import Path


class MetricsLog:
    def __init__(self, path: Path, total_steps: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.total = total_steps
        self.start = time.perf_counter()

    def write(self, metrics: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(metrics, sort_keys=True) + "\n")

    def progress_line(self, step: int, metrics: dict) -> str:
        """`step 3/10 | reward 0.750 | acc 0.250 | ... | 12.3 tok/s | eta 0:40`."""
        elapsed = time.perf_counter() - self.start
        eta = elapsed / (step + 1) * (self.total - step - 1)
        parts = [f"step {step + 1}/{self.total}"]
        for key, label in (("reward_mean", "reward"), ("accuracy", "acc"), ("format", "fmt"), ("loss", "loss"), ("kl", "kl")):
            if key in metrics:
                parts.append(f"{label} {metrics[key]:.3f}")
        if "tokens_per_s" in metrics:
            parts.append(f"{metrics['tokens_per_s']:.1f} tok/s")
        parts.append(f"eta {int(eta) // 60}:{int(eta) % 60:02d}")
        return " | ".join(parts)
