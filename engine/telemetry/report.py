"""End-of-run report: a summary table of the metrics and a PNG plot of reward per step."""
from __future__ import annotations

from pathlib import Path

SUMMARY_KEYS = ("reward_mean", "accuracy", "format", "response_len", "tool_calls", "kl", "clip_frac", "entropy",
                "grad_norm", "tokens_per_s", "logp_gap_mean", "logp_gap_max")
LOWER_IS_BETTER = frozenset({"kl", "logp_gap_mean", "logp_gap_max"})


def _num(v: float) -> str:
    return f"{v:>10.2e}" if v != 0 and abs(v) < 1e-2 else f"{v:>10.3f}"


def summary_table(history: list[dict]) -> str:
    """First / last / best value of the headline metrics, as a fixed-width table."""
    rows = [f"{'metric':<14}{'first':>10}{'last':>10}{'best':>10}"]
    for key in SUMMARY_KEYS:
        values = [m[key] for m in history if isinstance(m.get(key), (int, float))]
        if values:
            best = min(values) if key in LOWER_IS_BETTER else max(values)
            rows.append(f"{key:<14}{_num(values[0])}{_num(values[-1])}{_num(best)}")
    return "\n".join(rows)


def plot_rewards(history: list[dict], path: Path) -> Path:
    """Reward, accuracy and format reward per step (and held-out accuracy where evaluated), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    steps = [m["step"] for m in history if "reward_mean" in m]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for key, label in (("reward_mean", "reward"), ("accuracy", "accuracy"), ("format", "format")):
        ax.plot(steps, [m[key] for m in history if "reward_mean" in m], marker="o", label=label)
    evals = [(m["step"], m["eval_accuracy"]) for m in history if isinstance(m.get("eval_accuracy"), (int, float))]
    if evals:
        ax.plot(*zip(*evals), marker="s", linestyle="--", label="held-out accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
