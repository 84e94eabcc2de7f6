"""load_policy: tiny model cached atomically on disk, local HF dirs, clear errors otherwise."""
import json

import pytest
import torch

from engine.errors import ConfigError
from engine.model import tiny
from engine.model.loading import ensure_tiny, load_policy
from engine.model.tiny import build_tiny_model, save_tiny


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VTHINK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def reference():
    return build_tiny_model(seed=0)[0].state_dict()


def same_weights(model, state) -> bool:
    got = model.state_dict()
    return got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)


def forbid_builds(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("tiny model rebuilt although a current cache exists")
    monkeypatch.setattr(tiny, "save_tiny", boom)  # ensure_tiny imports it from there when building


@pytest.mark.parametrize("name", [None, "tiny"])
def test_tiny_is_built_once_then_reused(cache, reference, monkeypatch, name):
    model, tok = load_policy(name)
    assert same_weights(model, reference) and not model.training
    assert sorted(p.name for p in cache.iterdir()) == ["tiny-0"]  # no temp dirs left behind
    forbid_builds(monkeypatch)
    again, tok2 = load_policy(name)
    assert same_weights(again, reference)
    assert tok2.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()


def test_dtype_and_seed(cache, reference):
    model, _ = load_policy("tiny", dtype=torch.bfloat16, seed=3)
    assert model.dtype == torch.bfloat16 and (cache / "tiny-3").is_dir()
    assert not same_weights(model.float(), reference)


def test_stale_cache_is_rebuilt(cache, reference):
    path = ensure_tiny(0)
    (path / "vthink_tiny.json").write_text(json.dumps({"format_version": -1, "seed": 0}))
    (path / "model.safetensors").write_bytes(b"garbage from an old format")
    assert ensure_tiny(0) == path
    model, _ = load_policy(str(path))
    assert same_weights(model, reference)
    assert sorted(p.name for p in cache.iterdir()) == ["tiny-0"]


def test_lost_race_uses_the_winners_copy(cache, reference, monkeypatch):
    # Another process finishes tiny-0 while we are still writing ours: our rename fails and the
    # winner's complete copy is used; our temporary directory is cleaned up.
    real_save = tiny.save_tiny

    def racing_save(path, seed=0, arch="qwen2_5_vl"):
        real_save(cache / f"tiny-{seed}", seed=seed, arch=arch)  # the other writer lands first
        return real_save(path, seed=seed, arch=arch)

    monkeypatch.setattr(tiny, "save_tiny", racing_save)
    path = ensure_tiny(0)
    assert path == cache / "tiny-0"
    assert sorted(p.name for p in cache.iterdir()) == ["tiny-0"]
    assert same_weights(load_policy(str(path))[0], reference)


def test_local_directory(tmp_path, reference):
    path = save_tiny(tmp_path / "policy", seed=0)
    model, tok = load_policy(str(path))
    assert same_weights(model, reference)
    assert tok.convert_tokens_to_ids("<think>") == tok.encode("<think>", add_special_tokens=False)[0]


@pytest.mark.parametrize("make, match", [
    (lambda d: str(d / "missing"), "is not a local directory"),
    (lambda d: "Qwen/Qwen2.5-VL-7B-Instruct", "no model hub access"),
    (lambda d: str(d), "has no config.json"),
])
def test_bad_paths_raise_config_error(tmp_path, make, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_policy(make(tmp_path))
    assert err.value.key == "model.path"
