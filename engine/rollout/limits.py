"""The vLLM engine's limits from the run's budgets: context length and memory share."""
from __future__ import annotations

import math

PROMPT_TEXT_TOKENS = 1536  # system prompt with tool schemas, question and options: generous for either tokenizer
OBSERVATION_TEXT_TOKENS = 128  # per observation: the tool turn's markup and its text
TIMESTAMP_TOKENS = 12  # Qwen3-VL: "<12.5 seconds>" plus the block's start and end, per temporal patch


def max_model_len(rollout, video, spec) -> int:
    """rollout.max_model_len, or for "auto" the longest trajectory the budgets allow, rounded up to 256: prompt
    text, the prompt video at video.max_frames / video.max_pixels, every model token (max_trajectory_tokens), the
    observations' text and their visual tokens (rollout.max_visual_tokens). `rollout`, `video`: those config
    sections; `spec`: the policy's VisionSpec."""
    r = rollout
    if r.max_model_len != "auto":
        return int(r.max_model_len)
    patches = math.ceil(video.max_frames / spec.temporal_patch_size)
    per_patch = video.max_pixels // (spec.factor * spec.factor) + (TIMESTAMP_TOKENS if spec.timestamps else 0)
    observations = r.max_turns if (r.agent or r.relook) else 0
    total = (PROMPT_TEXT_TOKENS + patches * per_patch + r.max_trajectory_tokens
             + observations * OBSERVATION_TEXT_TOKENS + (r.max_visual_tokens if observations else 0))
    return -(-total // 256) * 256


def gpu_memory_utilization(rollout, colocate: bool) -> float:
    """rollout.gpu_memory_utilization; "auto": 0.45 when the worker shares its GPU with a learner (ray.colocate),
    else 0.85."""
    value = rollout.gpu_memory_utilization
    if value != "auto":
        return float(value)
    return 0.45 if colocate else 0.85
