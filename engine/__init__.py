"""vthink: a GRPO rollout engine for video multimodal LLMs that think with videos."""

__version__ = "0.1.0"
