"""Model side of vthink: tiny Qwen2.5-VL factory, local tokenizer, chat template, loading."""
from importlib import import_module

# Names are resolved on first use (PEP 562) so `import engine.model` stays cheap: the
# submodules pull in torch and transformers, which take seconds to import.
_EXPORTS = {
    "SPECIAL_TOKENS": "tokenizer",
    "REASONING_TAGS": "tokenizer",
    "build_tokenizer": "tokenizer",
    "CHAT_TEMPLATE": "chat_template",
    "tiny_config": "tiny",
    "build_tiny_model": "tiny",
    "save_tiny": "tiny",
    "load_policy": "loading",
    "ensure_tiny": "loading",
    "expand_vision_pads": "video_tokens",
    "mm_token_type_ids": "video_tokens",
    "num_vision_tokens": "video_tokens",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine.model' has no attribute {name!r}")
    return getattr(import_module(f"engine.model.{_EXPORTS[name]}"), name)
