"""VisionSpec: what one model architecture's processor does to a video (patch grid, pixel statistics, layout)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ARCHS = ("qwen2_5_vl", "qwen3_vl")  # the architectures vthink implements: the one list every part checks against
# Config model_type -> architecture. Qwen2-VL is not here on purpose: its temporal position ids count frames, not
# seconds, so the Qwen2.5-VL rule would silently train it at the wrong positions.
MODEL_TYPES = {"qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "qwen3_vl_moe": "qwen3_vl"}


@dataclass(frozen=True)
class VisionSpec:
    """The published processor settings of an architecture.

    arch: "qwen2_5_vl" (temporal position ids carry absolute time) or "qwen3_vl" (each temporal patch is
        its own <|vision_start|> ... <|vision_end|> block after a `<{t:.1f} seconds>` text timestamp).
    patch_size / merge_size / temporal_patch_size: the patch grid; frame sides are multiples of
        patch_size * merge_size.
    image_mean / image_std: per-channel normalisation after x / 255.
    """

    arch: str = "qwen2_5_vl"
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown vision architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")

    @property
    def factor(self) -> int:
        """Frame sides are multiples of this: 28 for Qwen2.5-VL, 32 for Qwen3-VL."""
        return self.patch_size * self.merge_size

    @property
    def timestamps(self) -> bool:
        """True when the prompt writes a text timestamp before each temporal patch (Qwen3-VL)."""
        return self.arch == "qwen3_vl"

    @property
    def patch_width(self) -> int:
        """Values per patch row of pixel_values: 3 * temporal_patch_size * patch_size**2."""
        return 3 * self.temporal_patch_size * self.patch_size**2


def arch_of(model_type: str | None) -> str:
    """The architecture of a config's model_type (MODEL_TYPES; a config without one is taken as Qwen2.5-VL).
    The one rule every part (positions, preprocessing, prompt layout, the vLLM backend) decides by; any other
    model_type is refused, naming what is supported."""
    if model_type is None:
        return "qwen2_5_vl"
    if model_type not in MODEL_TYPES:
        from engine.errors import ConfigError

        raise ConfigError("model.path", f"model_type {model_type!r} is not supported; vthink implements "
                                        f"{', '.join(sorted(MODEL_TYPES))} (Qwen2-VL's temporal positions differ "
                                        "from Qwen2.5-VL's)")
    return MODEL_TYPES[model_type]


QWEN2_5_VL = VisionSpec()
# Qwen3-VL's preprocessor_config.json: patch 16, mean = std = 0.5.
QWEN3_VL = VisionSpec("qwen3_vl", 16, 2, 2, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def vision_spec(config: Any) -> VisionSpec:
    """The spec of a transformers model config (Qwen2.5-VL, or Qwen3-VL / Qwen3-VL-MoE by model_type), with the
    patch grid read from its vision_config."""
    arch = arch_of(getattr(config, "model_type", None))
    base = QWEN3_VL if arch == "qwen3_vl" else QWEN2_5_VL
    vision = config.vision_config
    return VisionSpec(arch, int(vision.patch_size), int(vision.spatial_merge_size), int(vision.temporal_patch_size),
                      base.image_mean, base.image_std)
