"""The `learner` config section: micro-batch token budget, where old log-probs come from, checkpoints kept."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.rules import check, ruled

OLD_LOGP_MODES = ("policy", "recompute", "rollout")


@dataclass
class LearnerConfig:
    """The FSDP learner: micro-batches, where old log-probs come from, the fused loss, memory, checkpoints."""

    # Most tokens (text + visual, as the sequence holds them) one micro-batch of one rank may carry. A
    # single sample longer than this gets a micro-batch of its own.
    micro_batch_tokens: int = ruled(16384, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
    # Where the PPO ratio's old log-probs come from:
    #   "policy":    the update pass's own log-probs, detached (one optimizer step per batch makes this
    #                exactly the current policy's, with no extra forward pass),
    #   "recompute": a separate no-grad pass of the current policy before the update (verl's way),
    #   "rollout":   the rollout engine's log-probs (behaviour policy; right for one-step-off training).
    old_logp: Literal["policy", "recompute", "rollout"] = ruled(
        "policy", lambda v: v in OLD_LOGP_MODES, f"one of {', '.join(OLD_LOGP_MODES)}")
    # The GRPO loss with the LM head inside the loss kernel (kernels.linear_grpo: 3 GEMMs instead of 4, no
    # log-prob tensor kept for backward); used whenever the policy's LM head is a bias-free linear layer.
    fused_loss: bool = True
    # Recompute each decoder layer's and vision block's activations in backward instead of keeping them: activation
    # memory of one layer instead of all, for about a third more compute.
    activation_checkpointing: bool = False
    # Newest step directories kept by save_checkpoint; older ones are deleted.
    keep_checkpoints: int = ruled(3, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")

    def validate(self) -> LearnerConfig:
        """The same rules `vthink` checks at config time, for a LearnerConfig built in code."""
        check(self, "learner")
        return self
