"""A tokenizer that is not the model's is refused when the model loads, naming both sides."""
import copy
import json
import shutil

import pytest

from engine.errors import ConfigError
from engine.model.loading import check_vocab, ensure_tiny, load_policy
from engine.model.sized import QWEN_TOKENS, QWEN_VOCAB, padded_tokenizer, sized_config
from engine.model.tiny import build_tiny_model


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(seed=0)


def test_matching_pairs_pass(tiny):
    model, tok = tiny
    check_vocab(model.config, tok)
    big = padded_tokenizer()
    assert len(big) == QWEN_TOKENS
    check_vocab(sized_config("qwen2.5-vl-3b-2layer", big), big)  # Qwen's 271 padding rows are fine


def test_large_model_vocab_with_a_small_tokenizer_is_refused(tiny):
    _, tok = tiny
    config = sized_config("qwen2.5-vl-3b-2layer", tok)  # 151936 rows, a 4096-token tokenizer
    with pytest.raises(ConfigError, match=f"{QWEN_VOCAB} rows but the tokenizer only 4096 tokens") as e:
        check_vocab(config, tok)
    assert e.value.key == "model.path"


def test_tokenizer_larger_than_the_embedding_is_refused(tiny):
    model, tok = tiny
    config = copy.deepcopy(model.config)
    config.text_config.vocab_size = 4000
    with pytest.raises(ConfigError, match="4096 tokens but the model's embedding only 4000 rows"):
        check_vocab(config, tok)


def test_special_token_mismatch_names_both_ids(tiny, tmp_path):
    model, tok = tiny
    src = ensure_tiny(0)
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    want = tok.convert_tokens_to_ids("<|video_pad|>")
    cfg["video_token_id"] = want - 1
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=rf"<\|video_pad\|> is id {want} in the tokenizer but "
                                          rf"config.video_token_id = {want - 1}"):
        load_policy(str(dst))
