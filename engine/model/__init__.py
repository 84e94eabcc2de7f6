"""Model side of vthink: tiny Qwen2.5-VL factory, local tokenizer, chat template, loading."""
from engine.model.tokenizer import SPECIAL_TOKENS, REASONING_TAGS, build_tokenizer
from engine.model.chat_template import CHAT_TEMPLATE
from engine.model.tiny import tiny_config, build_tiny_model, save_tiny
from engine.model.loading import load_policy, ensure_tiny, model_dir
from engine.model.video_tokens import expand_vision_pads, mm_token_type_ids, num_vision_tokens

__all__ = [
    "CHAT_TEMPLATE", "REASONING_TAGS", "SPECIAL_TOKENS", "build_tiny_model", "build_tokenizer",
    "ensure_tiny", "expand_vision_pads", "load_policy", "model_dir", "mm_token_type_ids", "num_vision_tokens",
    "save_tiny", "tiny_config",
]
