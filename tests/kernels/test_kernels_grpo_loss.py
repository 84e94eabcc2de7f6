"""grpo_loss (PyTorch path and Triton under the interpreter) against a float64 verl-semantics reference."""
import itertools

import pytest
import torch

from kernels import KernelInputError, grpo_loss
from kernels.grpo_loss.config import AGGS, KL_TYPES, GRPOConfig
from kernels.grpo_loss.op import grpo_loss_with_backend
from kernels.grpo_loss.reference import grpo_loss_reference


def data(seed=0, B=5, T=37):
    g = torch.Generator().manual_seed(seed)
    lp = torch.randn(B, T, generator=g) * 0.5 - 1.0
    old = lp + torch.randn(B, T, generator=g) * 0.3
    old[0, :3] = lp[0, :3] + 25.0  # log-ratio beyond the +-20 clamp
    ref = lp + torch.randn(B, T, generator=g) * 0.5
    ref[1, :2] = lp[1, :2] + 30.0  # k3 beyond its clamps
    mask = torch.rand(B, T, generator=g) > 0.3
    mask[2] = False  # an empty sequence
    ent = torch.rand(B, T, generator=g) * 3
    adv_b = torch.randn(B, generator=g)
    adv_bt = torch.randn(B, T, generator=g)
    return lp, old, ref, mask, ent, adv_b, adv_bt


def run(fn, lp, ent):
    x = lp.clone().requires_grad_()
    e = ent.clone().requires_grad_()
    loss, stats = fn(x, e)
    loss.backward()
    return [loss.detach(), x.grad, e.grad] + [stats[k] for k in sorted(stats)]


COMBOS = list(itertools.product(KL_TYPES, AGGS, (None, 3.0), (False, True)))


def compare(backend, kl_type, agg, dual, per_tok, max_len=None):
    lp, old, ref, mask, ent, adv_b, adv_bt = data()
    adv = adv_bt if per_tok else adv_b
    kw = dict(clip_low=0.2, clip_high=0.28, dual_clip=dual, kl_type=kl_type, kl_coef=0.1, agg=agg,
              entropy_coef=0.01, max_len=max_len)
    cfg = GRPOConfig(**kw)
    d = torch.float64
    ref64 = run(lambda x, e: grpo_loss_reference(x, old.to(d), ref.to(d), adv.to(d), mask, cfg, e), lp.to(d), ent.to(d))
    plain = run(lambda x, e: grpo_loss_reference(x, old, ref, adv, mask, cfg, e), lp, ent)
    ours = run(lambda x, e: grpo_loss_with_backend(x, old, ref, adv, mask, entropy=e, backend=backend, **kw), lp, ent)
    for i, (o, p, r) in enumerate(zip(ours, plain, ref64)):
        err_o = (o.double() - r).abs().max().item()
        err_p = (p.double() - r).abs().max().item()
        scale = max(1.0, r.abs().max().item())  # 1e-6 relative: the loss can be O(100) with k2 far off-policy
        assert err_o <= 2 * err_p + 1e-6 * scale, (i, err_o, err_p)


@pytest.mark.parametrize("kl_type,agg,dual,per_tok", COMBOS)
def test_torch_path_matches_verl_semantics(kl_type, agg, dual, per_tok):
    compare("torch", kl_type, agg, dual, per_tok)


@pytest.mark.parametrize("kl_type,agg,dual,per_tok", COMBOS)
def test_triton_interpreter_matches_verl_semantics(kl_type, agg, dual, per_tok, interpret):
    compare("triton", kl_type, agg, dual, per_tok)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_dr_grpo_max_len(backend, interpret):
    compare(backend, "k3", "seq-mean-token-sum-norm", None, False, max_len=64)


def test_on_policy_ratio_is_one_and_loss_is_minus_mean_advantage():
    lp, _, _, mask, _, adv_b, _ = data()
    loss, stats = grpo_loss(lp, lp.clone(), None, adv_b, mask)
    m = mask.float()
    expected = -(adv_b[:, None] * m).sum() / m.sum()  # ratio 1 everywhere, nothing clipped
    assert torch.allclose(loss, expected, atol=1e-6)
    assert stats["ratio_mean"].item() == pytest.approx(1.0, abs=1e-6)
    assert stats["clip_frac"].item() == 0.0 and stats["approx_kl"].item() == 0.0
    assert set(stats) == {"clip_frac", "approx_kl", "kl", "ratio_mean", "entropy_mean"}
    assert all(v.dim() == 0 for v in stats.values())


def test_bad_options_raise_typed_errors():
    lp, old, ref, mask, ent, adv_b, _ = data()
    with pytest.raises(KernelInputError, match="ref_logp"):
        grpo_loss(lp, old, None, adv_b, mask, kl_coef=0.1)
    with pytest.raises(KernelInputError, match="kl_type"):
        grpo_loss(lp, old, ref, adv_b, mask, kl_type="k4")
    with pytest.raises(KernelInputError, match="agg"):
        grpo_loss(lp, old, ref, adv_b, mask, agg="sum")
    with pytest.raises(KernelInputError, match="dual_clip"):
        grpo_loss(lp, old, ref, adv_b, mask, dual_clip=0.5)
    with pytest.raises(KernelInputError, match="advantages"):
        grpo_loss(lp, old, ref, adv_b[:-1], mask)
    with pytest.raises(KernelInputError, match="entropy"):
        grpo_loss(lp, old, ref, adv_b, mask, entropy_coef=0.1)
