"""Factory for the embedded tiny Qwen2.5-VL / Qwen3-VL models: config, seeded init, save in HF layout."""
import json
from pathlib import Path

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerFast, Qwen2_5_VLConfig

from engine.model.loading import STAMP, tiny_stamp
from engine.model.tokenizer import EOS_TOKEN, PAD_TOKEN, build_tokenizer
from engine.video.spec import vision_spec


def tiny_config(tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL architecture at toy size; token ids taken from `tokenizer`.

    Sizes are the smallest that real engines accept: text head_dim 64 (vLLM's CPU attention
    rejects 16), vision head_dim 32. mrope_section splits head_dim/2 = 32 rotary pairs into
    temporal/height/width in Qwen's 16:24:24 proportion.
    """
    ids = tokenizer.convert_tokens_to_ids
    pad_id, eos_id = ids(PAD_TOKEN), ids(EOS_TOKEN)
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,  # grouped-query attention, as in the real models
        hidden_act="silu",
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                         "mrope_section": [8, 12, 12]},
        bos_token_id=pad_id,  # Qwen uses <|endoftext|> as bos and pad
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    vision = dict(
        depth=2,
        hidden_size=64,
        intermediate_size=128,
        num_heads=2,
        in_channels=3,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        tokens_per_second=2,  # Qwen2.5-VL's value: two temporal position ids per second
        window_size=112,
        out_hidden_size=128,
        fullatt_block_indexes=[1],  # block 0 windowed, block 1 full: both attention paths run
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def tiny_qwen3_vl_config(tokenizer: PreTrainedTokenizerFast):
    """Qwen3-VL architecture at the same toy size: patch 16, one DeepStack layer (vision block 0 feeds text
    layer 0), interleaved M-RoPE over the same 8:12:12 split; token ids taken from `tokenizer`."""
    from transformers import Qwen3VLConfig

    ids = tokenizer.convert_tokens_to_ids
    pad_id, eos_id = ids(PAD_TOKEN), ids(EOS_TOKEN)
    text = dict(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=64, hidden_act="silu",
                max_position_embeddings=32768, rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [8, 12, 12],
                                 "mrope_interleaved": True},
                bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id, tie_word_embeddings=False)
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, in_channels=3, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=128, num_position_embeddings=64,
                  deepstack_visual_indexes=[0])
    return Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                         video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                         vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False)


def _generation_config(tokenizer: PreTrainedTokenizerFast) -> GenerationConfig:
    ids = tokenizer.convert_tokens_to_ids
    pad_id, eos_id = ids(PAD_TOKEN), ids(EOS_TOKEN)
    # Like Qwen2.5-VL-Instruct: stop on either end-of-turn or end-of-text.
    return GenerationConfig(bos_token_id=pad_id, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id)


def build_tiny_model(seed: int = 0, dtype: torch.dtype = torch.float32, arch: str = "qwen2_5_vl"
                     ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A freshly initialised tiny model (eval mode) and its tokenizer; same seed, same bits.
    `arch`: "qwen2_5_vl" (the embedded default) or "qwen3_vl" (tiny_qwen3_vl_config)."""
    import transformers

    tokenizer = build_tokenizer()
    make = {"qwen2_5_vl": (tiny_config, "Qwen2_5_VLForConditionalGeneration"),
            "qwen3_vl": (tiny_qwen3_vl_config, "Qwen3VLForConditionalGeneration")}
    if arch not in make:
        raise ValueError(f"build_tiny_model: unknown arch {arch!r}; choose one of {', '.join(make)}")
    config_of, class_name = make[arch]
    model_class = getattr(transformers, class_name)  # transformers imports an architecture on first use
    # Init in fp32 under a private RNG state: the caller's global RNG is left untouched, and a
    # bf16 model is exactly the rounding of the fp32 one.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config_of(tokenizer))
    model.generation_config = _generation_config(tokenizer)
    return model.to(dtype).eval(), tokenizer


def save_processor_configs(path: Path, config) -> None:
    """The image and video processor configs of a Qwen2.5-VL or Qwen3-VL model folder, as the published
    checkpoints ship them (AutoProcessor / vLLM read them): the architecture's patch grid and statistics."""
    spec = vision_spec(config)
    qwen3 = spec.arch == "qwen3_vl"
    factor = spec.factor
    pre = {"min_pixels": 4 * factor * factor, "max_pixels": factor * factor * 1280,
           "patch_size": spec.patch_size, "temporal_patch_size": spec.temporal_patch_size,
           "merge_size": spec.merge_size, "image_mean": list(spec.image_mean), "image_std": list(spec.image_std),
           "processor_class": "Qwen3VLProcessor" if qwen3 else "Qwen2_5_VLProcessor"}
    if qwen3:  # Qwen3-VL states its pixel bounds as a size dict
        pre["size"] = {"shortest_edge": pre.pop("min_pixels"), "longest_edge": pre.pop("max_pixels")}
    image = {**pre, "image_processor_type": "Qwen2VLImageProcessor"}
    video = {**pre, "video_processor_type": "Qwen3VLVideoProcessor" if qwen3 else "Qwen2VLVideoProcessor"}
    (path / "preprocessor_config.json").write_text(json.dumps(image, indent=2) + "\n")
    (path / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2) + "\n")


def save_tiny(path: str | Path, seed: int = 0, arch: str = "qwen2_5_vl") -> Path:
    """Write the tiny model of `arch`, tokenizer (with chat template) and processor configs to `path`."""
    path = Path(path)
    model, tokenizer = build_tiny_model(seed=seed, arch=arch)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    save_processor_configs(path, model.config)
    (path / STAMP).write_text(json.dumps(tiny_stamp(seed, arch)) + "\n")
    return path
