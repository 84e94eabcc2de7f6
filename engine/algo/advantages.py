"""Group-relative advantages: GRPO (mean/std within each group) and Dr.GRPO (mean only)."""
from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, normalize_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """rewards [B*G] laid out group by group -> advantages [B*G].

    GRPO: (r - mean_g) / (std_g + eps), std unbiased as in the reference implementations.
    Dr.GRPO (normalize_std=False): r - mean_g, which removes the question-difficulty bias.
    A group whose rewards are all equal gets zero advantages either way.
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, got {tuple(rewards.shape)}")
    r = rewards.view(-1, group_size).to(torch.float32)
    adv = r - r.mean(dim=1, keepdim=True)
    if normalize_std:
        adv = adv / (r.std(dim=1, keepdim=True) + eps)
    return adv.reshape(-1)


def advantages_for(rewards: torch.Tensor, group_size: int, kind: str) -> torch.Tensor:
    """The configured estimator: "grpo" (mean/std) or "drgrpo" (mean only)."""
    if kind not in ("grpo", "drgrpo"):
        raise ValueError(f"unknown advantage estimator {kind!r}; expected 'grpo' or 'drgrpo'")
    return group_advantages(rewards, group_size, normalize_std=kind == "grpo")
