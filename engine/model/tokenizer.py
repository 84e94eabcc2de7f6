"""Builds the project's own byte-level BPE tokenizer (Qwen2 style) with the chat template."""
import re
from collections.abc import Iterator

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from engine.model.chat_template import CHAT_TEMPLATE
from engine.model.corpus import corpus

# Qwen2.5-VL's control tokens, in Qwen's order. <|endoftext|> pads, <|im_end|> ends a turn.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Tags the model writes itself. They are single tokens but not "special": decoding with
# skip_special_tokens=True must keep them, since rewards and the tool parser read them.
REASONING_TAGS = [
    "<think>", "</think>",
    "<time>", "</time>",
    "<caption>", "</caption>",
    "<answer>", "</answer>",
    "<tool_call>", "</tool_call>",
    "<tool_response>", "</tool_response>",
]
VOCAB_SIZE = 4096
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
# Qwen2's pre-tokenizer split: contractions, letter runs, single digits, punctuation runs, spaces.
# Single digits keep numbers and timestamps compositional (01:05 -> 0 1 : 0 5).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _training_texts() -> Iterator[str]:
    # Added tokens are cut out before BPE sees text at encode time, so train on the pieces
    # between them; otherwise merges would be wasted on fragments like "<|" and "im_start".
    cut = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS + REASONING_TAGS))
    for text in corpus():
        for piece in cut.split(text):
            if piece:
                yield piece


def build_backend() -> Tokenizer:
    """Train the raw `tokenizers` object; deterministic (same corpus, tie-broken merges)."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    # No normalizer: any string, NFC or not, must decode back to itself byte for byte.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    n_added = len(SPECIAL_TOKENS) + len(REASONING_TAGS)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - n_added,
        min_frequency=2,
        show_progress=False,
        # All 256 byte symbols, so every string is encodable even if its bytes never occur here.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_texts(), trainer=trainer)
    # Appended after the learned vocabulary, like Qwen's ids above the BPE range.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TAGS])
    return tok


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny model's tokenizer, trained locally, with Qwen2.5-VL's chat template set."""
    return PreTrainedTokenizerFast(
        tokenizer_object=build_backend(),
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
        padding_side="left",  # generation pads on the left so every prompt ends at the same column
        chat_template=CHAT_TEMPLATE,
    )
