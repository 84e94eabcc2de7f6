"""Fixtures of the vLLM backend tests over each module's `tiny_dir` (a saved tiny checkpoint): one real engine per
module, its tokenizer, and the same checkpoint through transformers in float32, the reference."""
import os

import pytest
import torch


@pytest.fixture(scope="module")
def backend(tiny_dir):
    from engine.rollout.vllm_backend import VLLMBackend

    # CPU engine: 1 GiB of KV cache is plenty; don't pin OpenMP threads on a shared 2-core box.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    return VLLMBackend(tiny_dir, dtype="float32", seed=0, enforce_eager=True, max_model_len=4096,
                       max_videos_per_prompt=2, track_digest=True)


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)


@pytest.fixture(scope="module")
def ref(tiny_dir):
    """The same checkpoint through transformers, float32: the reference every test compares with."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_dir, dtype=torch.float32, local_files_only=True).eval()
