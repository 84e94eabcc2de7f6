"""Fixtures for the rollout tests: the tiny model and a small rendered synthetic dataset (built once)."""
import pytest

from engine.config import load_config


@pytest.fixture(scope="session")
def rollout_cfg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rollout")
    return load_config(None, [
        f"data.dir={tmp / 'data'}", "data.num_videos=4", "data.duration_s=6",
        "video.fps=1", "video.min_frames=2", "video.max_frames=4", "video.max_pixels=12544",
        "rollout.group_size=2", "rollout.max_new_tokens=12",
    ])


@pytest.fixture(scope="session")
def session(rollout_cfg):
    from engine.orchestration.session import build_session

    return build_session(rollout_cfg, log=lambda _: None)


@pytest.fixture(scope="session")
def qwen3_session(rollout_cfg):
    """The same data and rollout on the tiny Qwen3-VL model (model.arch=qwen3_vl)."""
    from dataclasses import replace

    from engine.orchestration.session import build_session

    cfg = replace(rollout_cfg, model=replace(rollout_cfg.model, arch="qwen3_vl"))
    return build_session(cfg, log=lambda _: None)
