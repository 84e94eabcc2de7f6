"""Per-step metrics: appended to JSONL, mirrored to TensorBoard (and wandb when enabled), summarised on one line."""
from __future__ import annotations

import json
import time
from pathlib import Path


class MetricsLog:
    """Writes one JSON object per step to <dir>/metrics.jsonl and scalars to TensorBoard under <dir>/tb."""

    def __init__(self, out_dir: Path, total_steps: int, tensorboard: bool = True, wandb_project: str | None = None,
                 append: bool = False):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "metrics.jsonl"
        if not append:
            self.path.write_text("")
        self.total = total_steps
        self.start = time.perf_counter()
        self.steps_done = 0
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.dir / "tb"))
        self.wandb = None
        if wandb_project:
            try:
                import wandb
            except ImportError:
                wandb = None  # enabled but not installed: JSONL and TensorBoard still have everything
            if wandb is not None:
                self.wandb = wandb.init(project=wandb_project, dir=str(self.dir))

    def write(self, metrics: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(metrics, sort_keys=True) + "\n")
        step = int(metrics.get("step", self.steps_done))
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "step"}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)
        self.steps_done += 1

    def traces(self, step: int, lines: list[dict], root: Path) -> None:
        """A few traced samples (engine/telemetry/traces.py): text and frame strip to TensorBoard, a table to wandb."""
        if self.tb is not None:
            import numpy as np
            from PIL import Image

            for i, line in enumerate(lines):
                self.tb.add_text(f"rollouts/{i}", _markdown(line), step)
                strip = [np.asarray(Image.open(root / f["image"]).convert("RGB")) for f in line["frames"]]
                if strip:
                    h = min(a.shape[0] for a in strip)
                    self.tb.add_image(f"rollouts/{i}/frames", np.concatenate([a[:h] for a in strip], axis=1), step,
                                      dataformats="HWC")
            self.tb.flush()
        if self.wandb is not None:
            import wandb

            table = wandb.Table(columns=["row_id", "kind", "answer", "reward", "response"])
            for line in lines:
                table.add_data(line["row_id"], line["kind"], line["answer"], line["reward"]["total"],
                               "\n".join(t["text"] for t in line["turns"]))
            self.wandb.log({"rollouts": table}, step=step)

    def progress_line(self, step: int, metrics: dict) -> str:
        """`step 3/10 | reward 0.750 | acc 0.250 | ... | 12.3 tok/s | eta 0:40`."""
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(1, self.steps_done) * (self.total - step - 1)
        parts = [f"step {step + 1}/{self.total}"]
        for key, label in (("reward_mean", "reward"), ("accuracy", "acc"), ("format", "fmt"), ("loss", "loss"), ("kl", "kl")):
            if key in metrics:
                parts.append(f"{label} {metrics[key]:.3f}")
        if "logp_gap_max" in metrics:
            parts.append(f"gap {metrics['logp_gap_max']:.1e}")
        if "tokens_per_s" in metrics:
            parts.append(f"{metrics['tokens_per_s']:.1f} tok/s")
        parts.append(f"eta {int(eta) // 60}:{int(eta) % 60:02d}")
        return " | ".join(parts)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def keep_metrics_through(path: Path, step: int) -> None:
    """Drop the lines of steps after `step` (the checkpoint a run resumes from): steps redone are logged once."""
    kept = [m for m in read_metrics(path) if m["step"] <= step]
    Path(path).write_text("".join(json.dumps(m, sort_keys=True) + "\n" for m in kept))


def _markdown(line: dict) -> str:
    head = (f"**{line['row_id']}** ({line['kind']}) reward {line['reward']['total']:.3f}, "
            f"answer `{line['answer']}`\n\n")
    turns = "\n\n".join(f"*{t['role']}*: `{t['text'][:2000]}`" for t in line["turns"])
    return head + turns
