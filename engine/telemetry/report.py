"""End-of-run report: a summary table of the metrics and a PNG plot of reward per step."""
from __future__ import annotations

from pathlib import Path

SUMMARY_KEYS = ("reward_mean", "accuracy", "format", "response_len", "tool_calls", "kl", "clip_frac", "entropy",
                "grad_norm", "tokens_per_s")


def summary_table(history: list[dict]) -> str:
    """First / last / best value of the headline metrics, as a fixed-width table."""
    rows = [f"{'metric':<14}{'first':>10}{'last':>10}{'best':>10}"]
    for key in SUMMARY_KEYS:
        values = [m[key] for m in history if isinstance(m.get(key), (int, float))]
        if values:
            best = min(values) if key == "kl" else max(values)
            rows.append(f"{key:<14}{values[0]:>10.3f}{values[-1]:>10.3f}{best:>10.3f}")
    return "\n".join(rows)


def plot_rewards(history: list[dict], path: Path) -> Path:
    """Reward, accuracy and format reward per step, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m["step"] + 1 for m in history if "reward_mean" in m]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for key, label in (("reward_mean", "reward"), ("accuracy", "accuracy"), ("format", "format")):
        ax.plot(steps, [m[key] for m in history if "reward_mean" in m], marker="o", label=label)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean over samples")
    ax.set_title("vthink: reward per step")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
