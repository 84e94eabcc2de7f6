"""`vthink plan`: the memory model's sizes, its components, its verdicts and the keys it names; train refusing
what cannot fit before any actor starts."""
import json

import pytest

from engine.cli import main
from engine.config import ModelConfig, load_config
from engine.errors import ConfigError
from engine.orchestration.plan import KNOWN_MODELS, Dims, check_fits, plan

GPU8 = ["cluster.nodes=1", "cluster.gpus_per_node=8", "cluster.gpu_memory_gib=80", "cluster.cpu_memory_gib=1024"]
CPU = ["cluster.nodes=1", "cluster.gpus_per_node=0", "cluster.cpu_memory_gib=20"]


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl"])
def test_parameters_from_the_sizes_match_the_checkpoint(arch):
    from engine.model.loading import policy_dir
    from engine.orchestration.placement import parameter_count

    folder = policy_dir(ModelConfig(arch=arch))
    assert Dims.of(json.loads((folder / "config.json").read_text())).count() == parameter_count(folder)


@pytest.mark.parametrize("name, published", [("Qwen2.5-VL-3B-Instruct", 3.75e9), ("Qwen2.5-VL-7B-Instruct", 8.29e9),
                                             ("Qwen2.5-VL-72B-Instruct", 73.4e9), ("Qwen3-VL-8B-Instruct", 8.77e9)])
def test_known_architectures_count_their_published_parameters(name, published):
    assert Dims.of(KNOWN_MODELS[name]).count() == pytest.approx(published, rel=0.01)


def _plan(*overrides, config=None):
    return plan(load_config(config, list(overrides)))


def test_components_follow_the_options():
    base = _plan(*CPU, "ray.learners=1", "ray.rollout_workers=1")
    learner = base.roles["learner"].components
    assert base.roles["learner"].peak_gib == pytest.approx(sum(learner.values()))
    # activation checkpointing keeps one hidden state per layer instead of the whole layer's activations
    on, off = (_plan(*GPU8, f"learner.activation_checkpointing={v}", config="configs/qwen25vl_7b_grpo.yaml")
               for v in ("true", "false"))
    assert on.roles["learner"].components["activations"] < off.roles["learner"].components["activations"] / 10
    # no KL: no reference; the unfused loss holds the logits of the whole micro-batch
    assert "reference" not in _plan(*CPU, "algo.kl_coef=0").roles["learner"].components
    unfused = _plan(*CPU, "ray.learners=1", "ray.rollout_workers=1", "learner.fused_loss=false")
    assert unfused.roles["learner"].components["logits"] > 20 * learner["logits"]
    # the largest sequence sizes the micro-batch when it is longer
    assert base.micro_batch_tokens == max(16384, base.largest_sequence)


def test_learner_states_shard_over_ranks_and_the_reference_is_in_the_compute_dtype():
    one = _plan(*GPU8, "ray.learners=1", "ray.rollout_workers=1", config="configs/qwen25vl_7b_grpo.yaml")
    four = _plan(*GPU8, config="configs/qwen25vl_7b_grpo.yaml")
    a, b = one.roles["learner"].components, four.roles["learner"].components
    for k in ("master_weights", "gradients", "optimizer_state", "reference"):
        assert b[k] == pytest.approx(a[k] / 4)
    params = one.params
    assert a["master_weights"] * (1 << 30) == pytest.approx(4 * params)
    assert a["reference"] * (1 << 30) == pytest.approx(2 * params)  # bf16
    assert four.roles["learner"].count == 4 and four.roles["learner"].device == "gpu"


@pytest.mark.parametrize("config", ["configs/qwen25vl_7b_grpo.yaml", "configs/qwen3vl_8b_grpo.yaml"])
def test_the_real_configs_fit_their_cluster(config, capsys):
    assert main(["plan", config]) == 0
    out = capsys.readouterr().out
    assert "learner x4 (gpu)" in out and "rollout x4 (gpu)" in out and out.rstrip().endswith("fits")


def test_json_form_and_exit_code_when_it_does_not_fit(capsys):
    rc = main(["plan", "configs/qwen25vl_7b_grpo.yaml", "cluster.gpus_per_node=1", "cluster.gpu_memory_gib=24",
               "--json"])
    assert rc == 2
    out = json.loads(capsys.readouterr().out)
    assert out["fits"] is False and set(out["roles"]) == {"learner", "rollout", "driver"}
    for role in out["roles"].values():
        assert set(role) == {"count", "device", "peak_gib", "components"}
        assert role["peak_gib"] == pytest.approx(sum(role["components"].values()), abs=0.01)
    assert out["roles"]["learner"]["device"] == "gpu" and out["roles"]["driver"]["device"] == "cpu"
    keys = {p["key"] for p in out["problems"]}
    assert "ray.learners" in keys  # 4 + 4 actors on one GPU, and a 56 GiB learner rank on 24 GiB
    assert main(["plan", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fits"] is True


def test_refusals_name_the_key_that_shrinks_the_largest_part():
    # without activation checkpointing a 16k-token micro-batch of the 7B does not fit an 80 GB GPU
    p = _plan(*GPU8, "learner.activation_checkpointing=false", config="configs/qwen25vl_7b_grpo.yaml")
    assert [k for k, _ in p.problems] == ["learner.activation_checkpointing"]
    # vLLM's share too small for the weights
    p = _plan(*GPU8, "rollout.gpu_memory_utilization=0.1", config="configs/qwen25vl_7b_grpo.yaml")
    assert "rollout.gpu_memory_utilization" in [k for k, _ in p.problems]
    # on one host, sharding moves memory between processes: the frame cache is what to shrink here
    p = _plan("cluster.gpus_per_node=0", "cluster.cpu_memory_gib=2", "ray.learners=1", "ray.rollout_workers=1")
    assert p.problems[0][0] == "video.cache_bytes" and "GiB of host memory" in p.problems[0][1]
    with pytest.raises(ConfigError) as e:
        check_fits(load_config(None, ["cluster.gpus_per_node=0", "cluster.cpu_memory_gib=2"]))
    assert e.value.key == "video.cache_bytes"


def test_a_model_folder_that_is_not_here_and_not_known_is_named():
    with pytest.raises(ConfigError) as e:
        _plan("model.path=/models/NotAModel-7B")
    assert e.value.key == "model.path" and "Qwen2.5-VL-7B-Instruct" in str(e.value)


def test_train_refuses_a_layout_that_cannot_fit_before_any_actor_starts(tmp_path, capsys):
    import ray

    rc = main(["train", "cluster.gpus_per_node=0", "cluster.cpu_memory_gib=2", "ray.learners=1",
               "ray.rollout_workers=1", f"trainer.output_dir={tmp_path / 'run'}", f"data.dir={tmp_path / 'data'}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "video.cache_bytes" in err and "memory plan does not fit" in err
    if ray.is_initialized():
        from ray.util.state import list_actors

        assert [a for a in list_actors() if a.state == "ALIVE"] == []
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
