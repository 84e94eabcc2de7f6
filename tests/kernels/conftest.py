"""Fixtures of the kernel tests: `interpret` runs Triton kernels in its CPU interpreter."""
import pytest


@pytest.fixture
def interpret(monkeypatch):
    # the kernels read TRITON_INTERPRET at launch time, so this is scoped to one test
    monkeypatch.setenv("TRITON_INTERPRET", "1")
