"""The learner picks flash-attn only where it can run (CUDA, bf16/fp16, a tested wheel that imports)."""
import importlib.util
import sys

import pytest
import torch

from engine.learner.attention import FLASH_ATTN_TESTED, attention_implementation


@pytest.fixture
def flash_attn(tmp_path, monkeypatch):
    """Install a package named flash_attn with the given __init__ body, importable for this test only."""
    def install(body: str):
        pkg = tmp_path / "flash_attn"
        pkg.mkdir(exist_ok=True)
        (pkg / "__init__.py").write_text(body)
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop("flash_attn", None)
    yield install
    sys.modules.pop("flash_attn", None)


def test_sdpa_off_cuda_and_in_fp32_even_with_flash_attn_installed(flash_attn):
    flash_attn('__version__ = "2.8.3"\n')
    assert attention_implementation("cuda", torch.bfloat16)[0] == "flash_attention_2"
    assert attention_implementation("cuda", torch.float16)[0] == "flash_attention_2"
    impl, why = attention_implementation("cuda", torch.float32)
    assert impl == "sdpa" and "float32" in why
    assert attention_implementation("cpu", torch.bfloat16)[0] == "sdpa"


def test_a_wheel_that_does_not_import_falls_back_to_sdpa(flash_attn):
    flash_attn('raise ImportError("flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDevice")\n')
    impl, why = attention_implementation("cuda", torch.bfloat16)
    assert impl == "sdpa" and "does not import" in why and "undefined symbol" in why


def test_an_untested_release_falls_back_to_sdpa(flash_attn):
    (lo_major, lo_minor), (hi_major, hi_minor) = FLASH_ATTN_TESTED
    flash_attn(f'__version__ = "{hi_major}.{hi_minor}.0"\n')
    impl, why = attention_implementation("cuda", torch.bfloat16)
    assert impl == "sdpa" and "outside the tested range" in why
    flash_attn(f'__version__ = "{lo_major}.{lo_minor - 1}.9"\n')
    assert attention_implementation("cuda", torch.bfloat16)[0] == "sdpa"


def test_no_flash_attn_means_sdpa():
    if importlib.util.find_spec("flash_attn"):
        pytest.skip("flash-attn is installed here")
    impl, why = attention_implementation("cuda", torch.bfloat16)
    assert impl == "sdpa" and "not installed" in why


def test_the_gpu_extra_pins_the_tested_range():
    import tomllib
    from pathlib import Path

    (lo_major, lo_minor), (hi_major, hi_minor) = FLASH_ATTN_TESTED
    extra = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"flash-attn>={lo_major}.{lo_minor},<{hi_major}.{hi_minor}" in extra["gpu"]
