"""ray.rollout_workers / ray.learners "auto": the layout follows cores, memory and GPUs, and fits the memory."""
import pytest

from engine.config import ConfigError, load_config
from engine.model import model_dir
from engine.orchestration.placement import GiB, estimate, parameter_count, place

P_3B2 = 543_000_000  # the 3B-dims 2-layer model (engine/model/sized.py)


def cfg(*overrides):
    return load_config(None, list(overrides))


def test_defaults_are_auto_and_integers_are_kept():
    c = cfg()
    assert (c.ray.rollout_workers, c.ray.learners) == ("auto", "auto")
    p = place(cfg("ray.rollout_workers=3", "ray.learners=2"), P_3B2, cores=2, gpus=0, memory=8 * GiB)
    assert (p.rollout_workers, p.learners) == (3, 2)
    with pytest.raises(ConfigError, match="ray.learners"):
        cfg("ray.learners=0")


def test_cpu_layout_follows_cores_and_shrinks_to_fit_memory():
    small = place(cfg(), 10_000_000, cores=2, gpus=0, memory=24 * GiB)
    assert (small.rollout_workers, small.learners) == (1, 1)
    big = place(cfg(), 10_000_000, cores=32, gpus=0, memory=256 * GiB)
    assert (big.rollout_workers, big.learners) == (8, 2)
    tight = place(cfg(), P_3B2, cores=32, gpus=0, memory=48 * GiB)
    assert (tight.rollout_workers, tight.learners) < (8, 2)
    _, _, total = estimate(P_3B2, tight.learners, tight.rollout_workers, 4, True, GiB)
    assert total <= 0.95 * 48 * GiB and "may not fit" not in tight.why
    hopeless = place(cfg(), 20 * P_3B2, cores=2, gpus=0, memory=24 * GiB)
    assert (hopeless.rollout_workers, hopeless.learners) == (1, 1) and "may not fit" in hopeless.why


def test_gpu_layout_is_one_actor_per_gpu():
    p = place(cfg(), P_3B2, cores=64, gpus=8, memory=512 * GiB)
    assert (p.rollout_workers, p.learners) == (4, 4)
    p = place(cfg("ray.colocate=true"), P_3B2, cores=64, gpus=8, memory=512 * GiB)
    assert (p.rollout_workers, p.learners) == (8, 8)


def test_parameter_count_reads_safetensors_headers():
    from engine.model import load_policy

    model, _ = load_policy(None)
    assert parameter_count(model_dir(None)) == sum(p.numel() for p in model.state_dict().values())


def test_one_gpu_needs_colocation_and_colocation_pairs_counts():
    with pytest.raises(ConfigError, match="ray.colocate"):
        place(cfg(), P_3B2, cores=16, gpus=1, memory=128 * GiB)
    p = place(cfg("ray.colocate=true"), P_3B2, cores=16, gpus=1, memory=128 * GiB)
    assert (p.rollout_workers, p.learners) == (1, 1)
    p = place(cfg("ray.colocate=true", "ray.learners=4"), P_3B2, cores=64, gpus=8, memory=512 * GiB)
    assert (p.rollout_workers, p.learners) == (4, 4)
