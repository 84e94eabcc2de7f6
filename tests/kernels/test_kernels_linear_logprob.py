"""linear_logprob (Triton under the interpreter, and the chunked CPU path) against a float64 reference."""
import pytest
import torch

from kernels import KernelInputError, linear_logprob
from kernels.linear_logprob import torch_impl
from kernels.linear_logprob import triton as lt
from kernels.linear_logprob.op import linear_logprob_with_backend
from kernels.linear_logprob.reference import linear_logprob_reference


def rms(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref.double()).square().mean().sqrt()).item()


def make(n, h, v, dtype, peaked, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g)
    weight = torch.randn(v, h, generator=g) * (8.0 if peaked else 0.3)
    targets = torch.randint(0, v, (n,), generator=g)
    if peaked:  # near one-hot rows: half the rows target their argmax (logp ~ 0), half a random token
        top = (hidden @ weight.T).argmax(-1)
        targets = torch.where(torch.arange(n) % 2 == 0, top, targets)
    if n > 2:
        targets[1] = -100
    return hidden.to(dtype), weight.to(dtype), targets


def check(n, h, v, dtype, peaked, temperature, backend, upstream=("logp", "entropy")):
    hidden, weight, targets = make(n, h, v, dtype, peaked)
    g = torch.Generator().manual_seed(1)
    g_lp = torch.randn(n, generator=g) if "logp" in upstream else torch.zeros(n)
    g_en = torch.randn(n, generator=g) if "entropy" in upstream else torch.zeros(n)

    def run(fn):
        x = hidden.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        lp, en = fn(x, w)
        (lp * g_lp + en * g_en).sum().backward()
        return lp.detach(), en.detach(), x.grad, w.grad

    ref = run(lambda x, w: linear_logprob_reference(x, w, targets, temperature, -100, torch.float64))
    plain = run(lambda x, w: linear_logprob_reference(x, w, targets, temperature, -100))
    ours = run(lambda x, w: linear_logprob_with_backend(x, w, targets, temperature=temperature, backend=backend))
    # the 1e-6 margin is relative to the logit scale: peaked rows have |logits| ~ 100, where one fp32
    # ulp is 8e-6 and two equally exact GEMMs differ by that much (with N=1 the error is one sample)
    margin = 1e-6 * max(1.0, (hidden.double() @ weight.double().T / temperature).abs().max().item())
    for name, o, p, r in zip(("logp", "entropy", "grad_hidden", "grad_weight"), ours, plain, ref):
        assert o.dtype == p.dtype, name
        assert rms(o, r) <= 2 * rms(p, r) + margin, (name, rms(o, r), rms(p, r))
    ign = targets == -100
    assert torch.all(ours[0][ign] == 0) and torch.all(ours[1][ign] == 0)
    if ign.any():  # an ignored row must contribute no gradient
        assert torch.all(ours[2][ign] == 0)


import itertools  # noqa: E402

# (N, H, V, dtype, peaked, temperature): the full ragged grid of the issue, temperature != 1 mostly
CASES = [(n, h, v, dt, peaked, (0.7, 1.3, 1.0)[i % 3])
         for i, (n, h, v, dt, peaked) in enumerate(itertools.product(
             (1, 7, 130), (32, 48), (1000, 1031), (torch.float32, torch.bfloat16), (False, True)))]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"N{c[0]}-H{c[1]}-V{c[2]}-{str(c[3])[6:]}-{'peak' if c[4] else 'rand'}-T{c[5]}")
def test_triton_interpreter_matches_float64(case, interpret):
    check(*case, backend="triton")


def test_triton_entropy_only_gradient(interpret):
    check(7, 48, 1031, torch.bfloat16, True, 0.7, "triton", upstream=("entropy",))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"N{c[0]}-H{c[1]}-V{c[2]}-{str(c[3])[6:]}-{'peak' if c[4] else 'rand'}-T{c[5]}")
def test_chunked_matches_float64(case):
    check(*case, backend="torch")


def test_chunked_many_chunks(monkeypatch):
    monkeypatch.setattr(torch_impl, "CHUNK_BYTES", 16 * 4 * 1031)  # 16 rows per chunk: 9 chunks for N=130
    assert torch_impl.chunk_rows(1031) == 16
    check(130, 48, 1031, torch.float32, False, 0.7, "torch")
    check(130, 48, 1031, torch.bfloat16, True, 1.3, "torch")


def test_triton_many_vocab_slices_in_backward(interpret, monkeypatch):
    monkeypatch.setattr(lt, "BWD_BUFFER_BYTES", 130 * 2 * 128)  # 128-column slices: 9 slices for V=1031
    check(130, 32, 1031, torch.bfloat16, False, 0.7, "triton")


def test_grad_and_nograd_logp_bit_identical(interpret):
    hidden, weight, targets = make(130, 48, 1031, torch.bfloat16, False)
    for backend in ("triton", "torch"):
        with torch.no_grad():
            lp0, en0 = linear_logprob_with_backend(hidden, weight, targets, temperature=0.7, backend=backend)
        lp1, en1 = linear_logprob_with_backend(hidden.requires_grad_(), weight, targets, temperature=0.7,
                                               backend=backend)
        hidden.requires_grad_(False)
        assert torch.equal(lp0, lp1.detach()) and torch.equal(en0, en1.detach()), backend


def test_public_api_dispatches_cpu_to_chunked():
    hidden, weight, targets = make(7, 32, 1000, torch.float32, False)
    lp, en = linear_logprob(hidden, weight, targets, temperature=0.7)
    lp2, en2, _ = torch_impl.forward(hidden, weight, targets, 0.7, -100, True)
    assert torch.equal(lp, lp2) and torch.equal(en, en2)
    lp3, none = linear_logprob(hidden, weight, targets, with_entropy=False)
    assert none is None and lp3.dtype == torch.float32


def test_bad_inputs_raise_typed_errors():
    hidden, weight, targets = make(7, 32, 1000, torch.float32, False)
    with pytest.raises(KernelInputError, match="weight"):
        linear_logprob(hidden, weight[:, :16], targets)
    with pytest.raises(KernelInputError, match="targets"):
        linear_logprob(hidden, weight, targets.int())
    with pytest.raises(KernelInputError, match="targets"):
        linear_logprob(hidden, weight, torch.full((7,), 1000))
    with pytest.raises(KernelInputError, match="temperature"):
        linear_logprob(hidden, weight, targets, temperature=0.0)
    with pytest.raises(KernelInputError, match="weight"):
        linear_logprob(hidden, weight.double(), targets)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    hidden, weight, targets = make(7, 32, 1000, torch.float32, False)
    with pytest.raises(KernelInputError, match="TRITON_INTERPRET"):
        linear_logprob_with_backend(hidden, weight, targets, backend="triton")


def test_torch_compile_traces_the_custom_op():
    hidden, weight, targets = make(7, 32, 1000, torch.float32, False)
    fn = torch.compile(lambda h, w: linear_logprob(h, w, targets), backend="aot_eager", fullgraph=True)
    x = hidden.clone().requires_grad_()
    lp, en = fn(x, weight)
    (lp.sum() + en.sum()).backward()
    x2 = hidden.clone().requires_grad_()
    lp2, en2 = linear_logprob(x2, weight, targets)
    (lp2.sum() + en2.sum()).backward()
    assert torch.equal(lp, lp2) and torch.allclose(x.grad, x2.grad)


@pytest.mark.parametrize("smem_kb, dtype, stages", [(227, torch.float32, 3), (163, torch.float32, 2),
                                                    (163, torch.bfloat16, 3), (99, torch.bfloat16, 2),
                                                    (99, torch.float32, 2), (48, torch.float32, 1)])
def test_tiles_fit_the_devices_shared_memory(smem_kb, dtype, stages):
    """H100 227 KB, A100 163 KB, consumer cards 99 KB: the fixed 3-stage 128x128x64 fp32 tile (192 KB) fits only
    the first; every choice fits its budget and depends on (dtype, device) alone."""
    elem = torch.finfo(dtype).bits // 8
    t = lt.tiles_for(elem, smem_kb << 10)
    assert t.stages == stages
    assert t.stages * (t.bm + t.bn) * t.bk * elem + lt.SMEM_MARGIN <= smem_kb << 10
    assert (t.bm, t.bn) == (128, 128)  # the vocab split (a function of BN) stays the same on every device


def test_addmm_fp32_fallback_accumulates_in_fp32():
    """Where cuBLAS cannot take bf16 inputs into an fp32 output (here: CPU), row chunks of fp32 copies do it."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(37, 19, generator=g).to(torch.bfloat16)
    b = torch.randn(19, 23, generator=g).to(torch.bfloat16)
    acc = torch.randn(37, 23, generator=g)
    want = acc.double() + a.double() @ b.double()
    lt._addmm_fp32(acc, a, b, rows=8)
    assert not lt.mixed_addmm_supported(torch.device("cpu"), torch.bfloat16)
    assert torch.allclose(acc.double(), want, atol=1e-5)
