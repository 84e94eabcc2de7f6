"""Loss-in-forward linear_grpo_loss equals grpo_loss(linear_logprob(...)): values, gradients, bit-identical logp."""
import pytest
import torch

from kernels.grpo_loss.op import grpo_loss_with_backend
from kernels.linear_grpo.op import linear_grpo_loss_with_backend
from kernels.linear_logprob import torch_impl
from kernels.linear_logprob import triton as lt
from kernels.linear_logprob.op import linear_logprob_with_backend


def setup(dtype, B=5, T=26, H=48, V=1031, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B * T, H, generator=g).to(dtype)
    weight = (torch.randn(V, H, generator=g) * 0.3).to(dtype)
    targets = torch.randint(0, V, (B * T,), generator=g)
    mask = torch.rand(B, T, generator=g) > 0.25
    targets.view(B, T)[:, :2] = -100  # prompt tokens: ignored and masked
    mask[:, :2] = False
    with torch.no_grad():
        lp, _ = linear_logprob_with_backend(hidden, weight, targets, temperature=0.7, backend="torch")
    old = lp.view(B, T) + torch.randn(B, T, generator=g) * 0.2
    ref = lp.view(B, T) + torch.randn(B, T, generator=g) * 0.2
    adv = torch.randn(B, generator=g)
    return hidden, weight, targets, old, ref, adv, mask


OPTS = dict(clip_low=0.2, clip_high=0.28, dual_clip=3.0, kl_type="k3", kl_coef=0.05, agg="seq-mean-token-mean",
            entropy_coef=0.01)


def composed(hidden, weight, targets, old, ref, adv, mask, backend):
    x = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    lp, en = linear_logprob_with_backend(x, w, targets, temperature=0.7, backend=backend)
    loss, stats = grpo_loss_with_backend(lp.view(mask.shape), old, ref, adv, mask, entropy=en.view(mask.shape),
                                         backend=backend, **OPTS)
    loss.backward()
    return loss.detach(), stats, lp.detach(), x.grad, w.grad


def fused(hidden, weight, targets, old, ref, adv, mask, backend):
    x = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    loss, stats, lp, en = linear_grpo_loss_with_backend(x, w, targets, old, ref, adv, mask, temperature=0.7,
                                                        backend=backend, **OPTS)
    loss.backward()
    return loss.detach(), stats, lp.reshape(-1), x.grad, w.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_loss_in_forward_equals_composition(backend, dtype, interpret, monkeypatch):
    # several token chunks so the per-chunk GRPO terms and the grad_weight accumulation are exercised
    monkeypatch.setattr(torch_impl, "CHUNK_BYTES", 32 * 4 * 1031)
    monkeypatch.setattr(lt, "FUSED_BUFFER_BYTES", 64 * 1031 * 6)
    args = setup(dtype)
    a = composed(*args, backend)
    b = fused(*args, backend)
    assert torch.equal(a[2], b[2])  # bit-identical log-probs
    assert torch.allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
    for k in a[1]:
        assert torch.allclose(a[1][k], b[1][k], rtol=1e-5, atol=1e-6), k
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=1e-4)
    assert torch.allclose(a[3].float(), b[3].float(), **tol)
    assert torch.allclose(a[4].float(), b[4].float(), **tol)


def test_on_policy_ratio_is_exactly_one(interpret):
    hidden, weight, targets, _, ref, adv, mask = setup(torch.bfloat16)
    for backend in ("torch", "triton"):
        with torch.no_grad():
            old, _ = linear_logprob_with_backend(hidden, weight, targets, temperature=0.7, backend=backend)
        _, stats, lp, _ = linear_grpo_loss_with_backend(hidden.clone().requires_grad_(), weight, targets,
                                                        old.view(mask.shape), ref, adv, mask, temperature=0.7,
                                                        backend=backend, **OPTS)
        assert torch.equal(lp.reshape(-1), old), backend
        assert stats["ratio_mean"].item() == pytest.approx(1.0, abs=1e-7) and stats["clip_frac"].item() == 0.0


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_old_from_this_pass_equals_passing_its_detached_logprobs(backend, interpret, monkeypatch):
    """old_logp=None (the learner's on-policy mode): the same loss, stats and gradients as passing the pass's own
    log-probs, detached, as old_logp; computed chunk by chunk, in one pass."""
    monkeypatch.setattr(torch_impl, "CHUNK_BYTES", 32 * 4 * 1031)
    monkeypatch.setattr(lt, "FUSED_BUFFER_BYTES", 64 * 1031 * 6)
    hidden, weight, targets, _, ref, adv, mask = setup(torch.float32, seed=3)
    with torch.no_grad():
        own, _ = linear_logprob_with_backend(hidden, weight, targets, temperature=0.7, backend=backend)
    a = fused(hidden, weight, targets, own.view(mask.shape), ref, adv, mask, backend)
    b = fused(hidden, weight, targets, None, ref, adv, mask, backend)
    assert torch.equal(a[2], b[2]) and torch.equal(a[0], b[0])
    assert b[1]["ratio_mean"].item() == pytest.approx(1.0, abs=1e-7) and b[1]["clip_frac"].item() == 0.0
    assert torch.equal(a[3], b[3]) and torch.equal(a[4], b[4])
