"""A run folder stands for its run: `vthink eval RUN_DIR` takes its resolved config and newest policy, and
model.path=RUN_DIR its newest policy; a folder that is neither a model nor a run is named as such."""
import json
import logging
import shutil

import pytest

from engine.cli import _load
from engine.config import load_config
from engine.errors import ConfigError
from engine.model.loading import ensure_tiny, model_dir


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "runs" / "mine"
    cfg = load_config(None, [f"trainer.output_dir={run}", "rollout.max_new_tokens=160", "reward.format_layout=r1"])
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    tiny = ensure_tiny(0, "qwen2_5_vl")
    shutil.copytree(tiny, run / "sft")
    for step in (1, 3):
        shutil.copytree(tiny, run / "checkpoints" / f"step-{step:08d}")
    return run


def test_eval_run_dir_takes_its_config_and_newest_checkpoint(run, capsys):
    cfg = _load([str(run), "rollout.temperature=0.5"])
    assert cfg.model.path == str(run / "checkpoints" / "step-00000003")
    assert cfg.rollout.max_new_tokens == 160 and cfg.reward.format_layout == "r1"  # the run's, not the defaults
    assert cfg.rollout.temperature == 0.5 and cfg.trainer.output_dir == str(run)
    assert "step-00000003" in capsys.readouterr().err  # it says what it took


def test_model_path_may_name_a_run(run, caplog):
    with caplog.at_level(logging.WARNING):
        assert model_dir(str(run)) == run / "checkpoints" / "step-00000003"
    assert "vthink run" in caplog.text
    shutil.rmtree(run / "checkpoints")
    assert model_dir(str(run)) == run / "sft"  # no GRPO checkpoint: the SFT policy


def test_a_folder_that_is_neither_model_nor_run_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": {}, "trainer": {}}))
    with pytest.raises(ConfigError) as e:
        model_dir(str(tmp_path))
    assert e.value.key == "model.path" and "model_type" in str(e.value)
    with pytest.raises(ConfigError, match="not a vthink run"):
        _load([str(tmp_path)])
