"""The `learner` config section: micro-batch token budget, where old log-probs come from, checkpoints kept."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.errors import ConfigError

OLD_LOGP_MODES = ("policy", "recompute", "rollout")


@dataclass
class LearnerConfig:
    # Most tokens (text + visual, as the sequence holds them) one micro-batch of one rank may carry. A
    # single sample longer than this gets a micro-batch of its own.
    micro_batch_tokens: int = 16384
    # Where the PPO ratio's old log-probs come from:
    #   "policy":    the update pass's own log-probs, detached (one optimizer step per batch makes this
    #                exactly the current policy's, with no extra forward pass),
    #   "recompute": a separate no-grad pass of the current policy before the update (verl's way),
    #   "rollout":   the rollout engine's log-probs (behaviour policy; right for one-step-off training).
    old_logp: Literal["policy", "recompute", "rollout"] = "policy"
    keep_checkpoints: int = 3  # newest step directories kept by save_checkpoint; older ones are deleted

    def validate(self) -> LearnerConfig:
        if not isinstance(self.micro_batch_tokens, int) or self.micro_batch_tokens < 1:
            raise ConfigError("learner.micro_batch_tokens",
                              f"expected an integer >= 1, got {self.micro_batch_tokens!r}")
        if self.old_logp not in OLD_LOGP_MODES:
            raise ConfigError("learner.old_logp", f"expected one of {', '.join(OLD_LOGP_MODES)}, got {self.old_logp!r}")
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 1:
            raise ConfigError("learner.keep_checkpoints", f"expected an integer >= 1, got {self.keep_checkpoints!r}")
        return self
