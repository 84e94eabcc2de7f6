"""Options of the GRPO loss (verl semantics) and their validation."""
from dataclasses import dataclass
from typing import Optional

from kernels.errors import KernelInputError

KL_TYPES = ("k1", "k2", "k3", "abs")
AGGS = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
N_PARTIALS = 8  # per-block partial sums; see PARTIALS


# partial sums every backend produces per block of tokens, then `finalize` turns into loss + stats
PARTIALS = ("pg_w", "kl_w", "ent_w", "clip_n", "negkl_m", "ratio_m", "ent_m", "mask_n")


@dataclass(frozen=True)
class GRPOConfig:
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: Optional[float] = None
    kl_type: str = "k3"
    kl_coef: float = 0.0
    agg: str = "token-mean"
    entropy_coef: float = 0.0
    max_len: Optional[int] = None

    def validate(self, has_ref: bool, has_entropy: bool) -> None:
        if not 0.0 <= self.clip_low < 1.0:
            raise KernelInputError("clip_low", f"must be in [0, 1), got {self.clip_low}")
        if self.clip_high < 0.0:
            raise KernelInputError("clip_high", f"must be >= 0, got {self.clip_high}")
        if self.dual_clip is not None and not self.dual_clip > 1.0:
            raise KernelInputError("dual_clip", f"must be > 1 (or None), got {self.dual_clip}")
        if self.kl_type not in KL_TYPES:
            raise KernelInputError("kl_type", f"must be one of {KL_TYPES}, got {self.kl_type!r}")
        if self.agg not in AGGS:
            raise KernelInputError("agg", f"must be one of {AGGS}, got {self.agg!r}")
        if self.kl_coef != 0.0 and not has_ref:
            raise KernelInputError("ref_logp", "is required when kl_coef != 0")
        if self.entropy_coef != 0.0 and not has_entropy:
            raise KernelInputError("entropy", "is required when entropy_coef != 0")
        if self.max_len is not None and self.max_len <= 0:
            raise KernelInputError("max_len", f"must be > 0, got {self.max_len}")

    @property
    def kl_code(self) -> int:
        return KL_TYPES.index(self.kl_type)

    @property
    def agg_code(self) -> int:
        return AGGS.index(self.agg)
