"""Group-relative advantages against a direct per-group computation."""
import statistics

import pytest
import torch

from engine.algo.advantages import group_advantages


@pytest.mark.parametrize("normalize_std", [True, False])
def test_matches_per_group_statistics(normalize_std):
    g = 5
    rewards = torch.rand(4 * g, generator=torch.Generator().manual_seed(1))
    adv = group_advantages(rewards, g, normalize_std=normalize_std)
    for k in range(4):
        grp = rewards[k * g : (k + 1) * g].tolist()
        mu, sd = statistics.mean(grp), statistics.stdev(grp)
        for j, r in enumerate(grp):
            want = (r - mu) / (sd + 1e-6) if normalize_std else r - mu
            assert adv[k * g + j].item() == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_equal_rewards_give_zero():
    assert torch.count_nonzero(group_advantages(torch.ones(8), 4)) == 0


def test_bad_shape():
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.ones(7), 4)
