"""Model side of vthink: tiny Qwen2.5-VL / Qwen3-VL factory, local tokenizer, chat template, loading.

Names are imported on first use (PEP 562): `from engine.model import policy_dir` in the driver then costs no
transformers import.
"""
from engine.lazy import lazy_attributes

_HOME = {
    "SPECIAL_TOKENS": "tokenizer", "REASONING_TAGS": "tokenizer", "build_tokenizer": "tokenizer",
    "CHAT_TEMPLATE": "chat_template",
    "tiny_config": "tiny", "build_tiny_model": "tiny", "save_tiny": "tiny",
    "load_policy": "loading", "ensure_tiny": "loading", "model_dir": "loading", "policy_dir": "loading", "policy_spec": "loading",
    "expand_vision_pads": "video_tokens", "mm_token_type_ids": "video_tokens", "num_vision_tokens": "video_tokens",
    "video_prompt_ids": "video_tokens",
}
__all__ = sorted(_HOME)


__getattr__ = lazy_attributes(__name__, _HOME)
