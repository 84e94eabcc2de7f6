"""Builds the csrc/ pybind11 extension (engine._native) during `pip install`; metadata lives in pyproject.toml."""
from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

native = Pybind11Extension(
    "engine._native",
    sorted(glob("csrc/*.cpp")),
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=["-O3"],
)

setup(ext_modules=[native], cmdclass={"build_ext": build_ext})
