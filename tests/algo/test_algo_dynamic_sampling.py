"""Dynamic sampling: zero-variance groups are dropped and the batch is refilled, within a round budget."""
import pytest
import torch

from engine.algo.advantages import advantages_for, group_advantages
from engine.algo.dynamic_sampling import fill_informative, informative_groups, split_groups


def test_informative_groups_against_a_direct_check():
    gen = torch.Generator().manual_seed(0)
    r = torch.randint(0, 2, (40,), generator=gen).float()
    got = informative_groups(r, 4).tolist()
    want = [len(set(r[k * 4 : (k + 1) * 4].tolist())) > 1 for k in range(10)]
    assert got == want
    with pytest.raises(ValueError, match="group_size"):
        informative_groups(torch.ones(5), 4)


def test_split_keeps_order():
    items = list("abcdef")
    good, bad = split_groups(items, torch.tensor([1.0, 1.0, 0.0, 1.0, 2.0, 2.0]), 2)
    assert good == [["c", "d"]] and bad == [["a", "b"], ["e", "f"]]


def test_fill_refills_until_target():
    # Draw k groups of 2; every other group drawn is zero-variance.
    drawn = []

    def draw(k):
        items, rewards = [], []
        for _ in range(k):
            n = len(drawn)
            drawn.append(n)
            items += [(n, 0), (n, 1)]
            rewards += [0.0, float(n % 2)]
        return items, torch.tensor(rewards)

    groups, st = fill_informative(draw, 2, target_groups=3, max_rounds=10)
    assert [g[0][0] for g in groups] == [1, 3, 5]
    assert st.groups_dropped == st.groups_drawn - 3 and st.rounds >= 2


def test_fill_gives_up_after_max_rounds():
    groups, st = fill_informative(lambda k: ([0] * (2 * k), torch.zeros(2 * k)), 2, 4, max_rounds=2)
    assert groups == [] and st.rounds == 2 and st.groups_dropped == 8


def test_advantages_for():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0, 1.0])
    assert torch.allclose(advantages_for(r, 3, "grpo"), group_advantages(r, 3))
    assert torch.allclose(advantages_for(r, 3, "drgrpo"), r - r.view(2, 3).mean(1).repeat_interleave(3))
    with pytest.raises(ValueError, match="estimator"):
        advantages_for(r, 3, "ppo")
