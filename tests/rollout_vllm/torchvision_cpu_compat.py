"""Lets the CUDA-built torchvision wheel import on CPU-only torch (the vLLM CPU test venv only).

vLLM 0.32's Qwen2.5-VL imports transformers' Qwen2-VL image/video processors, which import
torchvision. PyPI has only CUDA builds of torchvision 0.28.0 (the release paired with torch
2.13.0); on CPU torch its C++ ops (`_C.so`, linked to libcudart) cannot load, which torchvision
tolerates everywhere except two unguarded `register_fake("torchvision::nms"/"qnms")` calls that
raise "operator torchvision::nms does not exist". Declaring those two schemas (no kernels)
before torchvision is first imported lets the pure-torch parts (transforms.v2) import and run;
calling nms still fails loudly, as it would without the ops. A `.pth` file installs this hook
into every interpreter of the venv, so vLLM's subprocesses get it too.
"""
import importlib.abc
import importlib.util
import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def _declare_missing_ops() -> None:
    import torch

    if torch.version.cuda is not None:  # a CUDA torch loads torchvision's real ops: leave it be
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        lib.define(schema)
    # Keep the Library alive for the process: its schemas vanish when it is collected.
    sys.modules[__name__].__dict__["_LIB"] = lib


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs `_declare_missing_ops` once, just before the first `import torchvision`."""

    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        _declare_missing_ops()
        return importlib.util.find_spec(name)


def install() -> None:
    if "torchvision" not in sys.modules and not any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        sys.meta_path.insert(0, _BeforeTorchvision())


def install_into_this_venv() -> None:
    """Copy this module into the running interpreter's site-packages with a `.pth` file that installs the hook in
    every interpreter of the venv (what the venv setup scripts run: `VENV/bin/python torchvision_cpu_compat.py`)."""
    import shutil
    import sysconfig
    from pathlib import Path

    site = Path(sysconfig.get_paths()["purelib"])
    shutil.copy(__file__, site / "vthink_torchvision_cpu_compat.py")
    (site / "vthink_torchvision_cpu_compat.pth").write_text(
        "import vthink_torchvision_cpu_compat; vthink_torchvision_cpu_compat.install()\n")


if __name__ == "__main__":
    install_into_this_venv()
