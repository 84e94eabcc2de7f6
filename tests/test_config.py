"""Config loading, dotted overrides and the errors that name the bad key."""
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import Config, load_config
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu.yaml"


def test_defaults_validate():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.rollout.group_size >= 2


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_load(path):
    load_config(path)


def test_yaml_and_overrides_apply_with_types():
    cfg = load_config(TINY, ["trainer.steps=5", "rollout.group_size=3", "optim.lr=3e-4", "model.path=/x/y", "algo.kl_coef=0"])
    assert cfg.trainer.steps == 5 and cfg.rollout.group_size == 3
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.model.path == "/x/y"
    assert cfg.algo.kl_coef == 0.0 and isinstance(cfg.algo.kl_coef, float)
    assert cfg.data.codec == "h264"  # from the YAML, untouched


def test_override_to_null():
    assert load_config(TINY, ["model.path=null"]).model.path is None


def test_lists_are_flow_lists_or_one_value_of_known_items():
    assert load_config(TINY, ["rollout.tools=[frame_zoom, clip_retrieval]"]).rollout.tools == ["frame_zoom",
                                                                                               "clip_retrieval"]
    # one value where a list goes is a list of one, as `data.train_files=rows.jsonl` is written
    assert load_config(TINY, ["rollout.tools=frame_zoom"]).rollout.tools == ["frame_zoom"]
    assert load_config(TINY, ["data.train_files=rows.jsonl", "data.val_files=[a.json, b.json]"]).data.train_files == [
        "rows.jsonl"]
    for value, words in (("[teleport]", "rollout.tools[0]"), ("teleport", "a list of"), ("{a: 1}", "a list of"),
                         ("[frame_zoom,frame_zoom]", "twice")):
        with pytest.raises(ConfigError) as err:
            load_config(TINY, [f"rollout.tools={value}"])
        assert words in f"{err.value.key} {err.value}"
    with pytest.raises(ConfigError, match="at least one tool"):
        load_config(TINY, ["rollout.mode=agent", "rollout.tools=[]"])


def test_top_p_below_one_is_refused_where_the_ratio_uses_rollout_logprobs():
    assert load_config(TINY, ["rollout.top_p=0.9"]).rollout.top_p == 0.9  # learner recomputes old log-probs
    for extra in ("learner.old_logp=rollout", "trainer.one_step_off=true", "trainer.max_staleness=2"):
        with pytest.raises(ConfigError) as err:
            load_config(TINY, ["rollout.top_p=0.9", extra])
        assert err.value.key == "rollout.top_p" and extra in str(err.value)


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("trainer.stepz=3", "trainer.stepz", "unknown key"),
        ("nosuch.x=1", "nosuch", "unknown key"),
        ("trainer.steps=abc", "trainer.steps", "integer"),
        ("trainer.steps=2.5", "trainer.steps", "integer"),
        ("rollout.group_size=1", "rollout.group_size", ">= 2"),
        ("optim.lr=-1e-5", "optim.lr", "> 0"),
        ("video.max_frames=2", "video.max_frames", "min_frames"),
        ("algo.kl_type=k9", "algo.kl_type", "'k3'"),
        ("data.codec=h265", "data.codec", "'vp9'"),
        ("rollout.temperature=true", "rollout.temperature", "number"),
        ("trainer=3", "trainer", "mapping"),
        ("justaword", "justaword", "key=value"),
    ],
)
def test_bad_values_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(TINY, [override])
    assert err.value.key == key
    assert words in str(err.value)


def test_unknown_key_in_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout:\n  group_size: 4\n  grop_size: 8\n")
    with pytest.raises(ConfigError, match="rollout.grop_size: unknown key"):
        load_config(bad)


def test_missing_file():
    with pytest.raises(ConfigError, match="no such file"):
        load_config("/nonexistent/config.yaml")


def test_cli_exits_nonzero_before_starting(tmp_path):
    """A bad config fails fast with status 2 and the key on stderr; nothing is rendered or trained."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "train", str(TINY), "rollout.group_size=1", f"trainer.output_dir={out}",
         f"data.dir={tmp_path / 'data'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2
    assert "rollout.group_size" in proc.stderr and ">= 2" in proc.stderr
    assert not out.exists() and not (tmp_path / "data").exists()


def test_cli_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0
    for name in ("train", "sft", "eval", "make-data"):
        assert name in proc.stdout


def test_colocate_needs_matching_counts():
    with pytest.raises(ConfigError, match="ray.colocate"):
        load_config(TINY, ["ray.colocate=true", "ray.rollout_workers=3", "ray.learners=2"])
    assert load_config(TINY, ["ray.colocate=true"]).ray.colocate


def test_rules_live_beside_their_fields_and_match_the_generator():
    import dataclasses

    from engine.config import DataConfig
    from engine.data.synthetic import make_dataset

    width = next(f for f in dataclasses.fields(DataConfig) if f.name == "width")
    assert not width.metadata["ok"](100) and width.metadata["ok"](128)
    with pytest.raises(ConfigError, match="data.width"):
        load_config(None, ["data.width=100"])
    with pytest.raises(ConfigError, match="width"):  # the generator's own check agrees with the config's
        make_dataset("/nonexistent/never-written", num_videos=1, width=100)


def test_dr_grpo_constant_is_the_trajectory_budget():
    thinker = load_config(None, ["rollout.max_new_tokens=64"]).rollout
    agent = load_config(None, ["rollout.mode=agent", "rollout.max_new_tokens=64", "rollout.max_turns=3"]).rollout
    capped = load_config(None, ["rollout.mode=agent", "rollout.max_total_tokens=100"]).rollout
    assert (thinker.max_trajectory_tokens, agent.max_trajectory_tokens, capped.max_trajectory_tokens) == (64, 256, 100)


def test_every_config_field_is_documented_where_it_is_declared():
    """Each key's comment (above or beside its field) and each section's docstring reach `vthink config show`."""
    import dataclasses

    from engine.config import Config
    from engine.config_docs import field_docs, section_doc

    missing = []

    def walk(obj, prefix):
        docs = field_docs(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                if not section_doc(type(value)):
                    missing.append(prefix + f.name + " (section)")
                walk(value, prefix + f.name + ".")
            elif f.name not in docs:
                missing.append(prefix + f.name)

    walk(Config(), "")
    assert not missing, f"undocumented config keys: {missing}"


def test_config_show_comments_each_key_and_loads_back(tmp_path):
    import yaml

    from engine.config_docs import commented_yaml

    cfg = load_config(None, ["rollout.mode=agent", "rollout.tools=[frame_zoom]", "model.path=/x/y", "algo.kl_coef=0"])
    text = commented_yaml(cfg)
    assert yaml.safe_load(text) == cfg.to_dict()
    (tmp_path / "shown.yaml").write_text(text)
    assert load_config(tmp_path / "shown.yaml").to_dict() == cfg.to_dict()
    lines = text.splitlines()
    # the comment right above a key is that key's: its own words, then its rule
    at = lines.index("  kl_coef: 0.0")
    assert "KL penalty" in lines[at - 1] and "a number >= 0" in lines[at - 1]
    at = lines.index("  mode: agent")
    assert "one of thinker, agent" in " ".join(lines[at - 2:at])
    assert "# The policy: a local Hugging Face folder" in text and max(map(len, lines)) <= 120
