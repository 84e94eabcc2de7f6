"""VisionSpec and arch_of: one list of architectures, read from a config's model_type, anything else refused."""
import subprocess
import sys
import types

import pytest

from engine.config import load_config
from engine.errors import ConfigError
from engine.native import mrope_config
from engine.video.spec import ARCHS, MODEL_TYPES, arch_of, vision_spec


@pytest.mark.parametrize("model_type,arch", [("qwen2_5_vl", "qwen2_5_vl"), ("qwen3_vl", "qwen3_vl"),
                                             ("qwen3_vl_moe", "qwen3_vl"), (None, "qwen2_5_vl")])
def test_arch_of_known_model_types(model_type, arch):
    assert arch_of(model_type) == arch and arch in ARCHS


@pytest.mark.parametrize("model_type", ["qwen2_vl", "llava", "qwen2_5_vl_x", ""])
def test_arch_of_refuses_other_model_types(model_type):
    # Qwen2-VL in particular: its temporal positions count frames, so the Qwen2.5-VL rule would be silently wrong.
    with pytest.raises(ConfigError, match="model_type .* is not supported"):
        arch_of(model_type)


def test_every_part_reads_the_one_list():
    assert set(MODEL_TYPES.values()) == set(ARCHS)
    for arch in ARCHS:
        assert load_config(None, [f"model.arch={arch}"]).model.arch == arch
    with pytest.raises(ConfigError, match="model.arch"):
        load_config(None, ["model.arch=qwen2_vl"])
    vision = types.SimpleNamespace(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2)
    qwen2 = types.SimpleNamespace(model_type="qwen2_vl", vision_config=vision, image_token_id=1, video_token_id=2)
    for read in (mrope_config, vision_spec):
        with pytest.raises(ConfigError, match="qwen2_vl"):
            read(qwen2)


def test_config_import_stays_light():
    """The config reads the architecture list from engine.video.spec without importing torch (the CLI's start)."""
    code = "import sys, engine.config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
