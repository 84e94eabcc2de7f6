"""Independent peer check: our logp equals -loss of liger-kernel's fused linear cross-entropy."""
import os
import subprocess
import sys

import pytest
import torch

from kernels.linear_logprob.op import linear_logprob_with_backend

pytest.importorskip("liger_kernel")

CASES = [(7, 32, 1000, False), (130, 48, 1031, True)]

# liger's kernels are Triton-only and decorated at import, so on CPU they need TRITON_INTERPRET=1
# before triton is imported: they run in a child process.
LIGER_CHILD = """
import sys, torch
from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction as F
cases = torch.load(sys.argv[1])
out = []
with torch.no_grad():
    for hidden, weight, targets in cases:
        r = F.apply(hidden, weight, targets, None, None, -100, 0.0, 0.0, "none")
        out.append(r[0] if isinstance(r, tuple) else r)
torch.save(out, sys.argv[2])
"""


def make(n, h, v, peaked):
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(n, h, generator=g)
    weight = torch.randn(v, h, generator=g) * (4.0 if peaked else 0.3)
    targets = torch.randint(0, v, (n,), generator=g)
    targets[0] = -100
    return hidden, weight, targets


@pytest.fixture(scope="module")
def liger_nll(tmp_path_factory):
    d = tmp_path_factory.mktemp("liger")
    torch.save([make(*c) for c in CASES], d / "in.pt")
    env = dict(os.environ, TRITON_INTERPRET="1")
    if torch.cuda.is_available():
        env.pop("TRITON_INTERPRET")
    subprocess.run([sys.executable, "-c", LIGER_CHILD, str(d / "in.pt"), str(d / "out.pt")], env=env, check=True,
                   timeout=300)
    return torch.load(d / "out.pt")


@pytest.mark.parametrize("i", range(len(CASES)))
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_logp_is_minus_liger_cross_entropy(i, backend, liger_nll, interpret):
    hidden, weight, targets = make(*CASES[i])
    with torch.no_grad():
        lp, _ = linear_logprob_with_backend(hidden, weight, targets, backend=backend)
    nll = liger_nll[i]
    scale = max(1.0, nll.abs().max().item())
    assert torch.allclose(lp, -nll, rtol=0, atol=2e-6 * scale), (lp + nll).abs().max()
    assert lp[0] == 0 and nll[0] == 0
