"""Triton kernels for the fused linear log-prob + entropy: logits tiles, online log-sum-exp, dlogits.

Forward: program (row block, vocab split) walks its vocab tiles, computes each [BM, BN] logits tile
in fp32 registers and folds it into a running (max m, sum s = sum e^{z-m}, a = sum e^{z-m}(z-m),
target logit); out-of-range columns are -inf. A combine kernel merges the splits of a row:
lse = M + log S, entropy = log S - A / S, logp = z_t - lse. The vocab split depends on V only and
the tile sizes are fixed (no autotuning), so every call computes every row in the same order:
the no-grad, grad and loss-in-forward passes are bit-identical.
Backward: a kernel recomputes (or reads the stored fp32) logits tile and writes dL/dlogits in the
input dtype; cuBLAS does dz @ W and dz^T @ h.
Under TRITON_INTERPRET=1 every load is upcast to fp32 (the interpreter's bf16 arithmetic is wrong).
"""
from dataclasses import dataclass
from typing import Optional

import torch
import triton
import triton.language as tl
from triton.language.standard import _elementwise_max, _sum_combine  # tl.sum/tl.max are jit functions fixed at import; these work in both modes

from kernels._backend import interpreting
from kernels._triton_jit import kernel
from kernels.linear_logprob.torch_impl import GradFn


@dataclass(frozen=True)
class Tiles:
    bm: int
    bn: int
    bk: int
    warps: int
    stages: int


SMEM_MARGIN = 16 << 10  # shared memory Triton keeps beside the pipelined tiles (reductions, layout changes)
SMEM_DEFAULT = 99 << 10  # opt-in shared memory per block when the device does not say (sm_86/89: 99 KB)


def tiles_for(elem_bytes: int, smem_bytes: int) -> Tiles:
    """The deepest pipeline of 128x128 tiles whose stages fit `smem_bytes`: each stage holds a [128, BK] tile of
    hidden and of weight. fp32 at 3 x 64 needs 192 KB, more than an A100's 163 KB; bf16 needs half."""
    for stages, bk in ((3, 64), (2, 64), (2, 32), (1, 32)):
        if stages * (128 + 128) * bk * elem_bytes + SMEM_MARGIN <= smem_bytes:
            return Tiles(bm=128, bn=128, bk=bk, warps=8, stages=stages)
    return Tiles(bm=64, bn=64, bk=32, warps=4, stages=1)


def tiles(dtype: torch.dtype = torch.bfloat16, device: torch.device | None = None) -> Tiles:
    """One config per (input dtype, device), never per shape (no autotune): the interpreter cannot autotune, and
    a per-shape choice would break bit-identity between passes."""
    if interpreting():
        return Tiles(bm=32, bn=64, bk=32, warps=1, stages=1)
    props = torch.cuda.get_device_properties(device if device is not None else torch.cuda.current_device())
    smem = getattr(props, "shared_memory_per_block_optin", 0) or SMEM_DEFAULT
    return tiles_for(torch.finfo(dtype).bits // 8, smem)


def _split(vocab: int, bn: int) -> tuple[int, int]:
    """(tiles per program, number of vocab splits): a function of V only."""
    n_tiles = triton.cdiv(vocab, bn)
    per = triton.cdiv(n_tiles, 16)
    return per, triton.cdiv(n_tiles, per)


def _stats_kernel(h_ptr, w_ptr, t_ptr, z_ptr, m_ptr, s_ptr, a_ptr, zt_ptr,
                  N, V, H, stride_h, stride_w, stride_z, n_split, temperature,
                  TILES_PER_PROG: tl.constexpr, STORE_Z: tl.constexpr, UPCAST: tl.constexpr,
                  IEEE: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    rows = pid_m * BM + tl.arange(0, BM)
    row_ok = rows < N
    tgt = tl.load(t_ptr + rows, mask=row_ok, other=-1)
    m_run = tl.full([BM], float("-inf"), tl.float32)
    s_run = tl.full([BM], 0.0, tl.float32)
    a_run = tl.full([BM], 0.0, tl.float32)
    zt = tl.full([BM], 0.0, tl.float32)
    n_tiles = (V + BN - 1) // BN
    t_lo = pid_s * TILES_PER_PROG
    t_hi = tl.minimum(t_lo + TILES_PER_PROG, n_tiles)
    for tile in range(t_lo, t_hi):
        cols = tile * BN + tl.arange(0, BN)
        col_ok = cols < V
        acc = tl.full([BM, BN], 0.0, tl.float32)
        for k0 in range(0, H, BK):
            ks = k0 + tl.arange(0, BK)
            k_ok = ks < H
            a = tl.load(h_ptr + rows[:, None] * stride_h + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(w_ptr + cols[:, None] * stride_w + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            if IEEE:
                acc = tl.dot(a, tl.trans(b), acc, input_precision="ieee")
            else:
                acc = tl.dot(a, tl.trans(b), acc)
        z = acc / temperature
        z = tl.where(col_ok[None, :], z, float("-inf"))
        if STORE_Z:
            tl.store(z_ptr + rows[:, None] * stride_z + cols[None, :], z, mask=row_ok[:, None] & col_ok[None, :])
        m_new = tl.maximum(m_run, tl.reduce(z, 1, _elementwise_max))
        e = tl.where(col_ok[None, :], tl.exp(z - m_new[:, None]), 0.0)
        alpha = tl.exp(m_run - m_new)
        shift = tl.where(m_run == float("-inf"), 0.0, m_run - m_new)  # avoid -inf * 0
        a_tile = tl.reduce(tl.where(col_ok[None, :], e * (z - m_new[:, None]), 0.0), 1, _sum_combine)
        a_run = alpha * (a_run + shift * s_run) + a_tile
        s_run = alpha * s_run + tl.reduce(e, 1, _sum_combine)
        m_run = m_new
        zt += tl.reduce(tl.where(cols[None, :] == tgt[:, None], z, 0.0), 1, _sum_combine)
    out = rows * n_split + pid_s
    tl.store(m_ptr + out, m_run, mask=row_ok)
    tl.store(s_ptr + out, s_run, mask=row_ok)
    tl.store(a_ptr + out, a_run, mask=row_ok)
    tl.store(zt_ptr + out, zt, mask=row_ok)


def _combine_kernel(m_ptr, s_ptr, a_ptr, zt_ptr, t_ptr, logp_ptr, ent_ptr, lse_ptr,
                    N, n_split, ignore_index, BR: tl.constexpr, BS: tl.constexpr):
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    sp = tl.arange(0, BS)
    row_ok = rows < N
    ok = row_ok[:, None] & (sp[None, :] < n_split)
    idx = rows[:, None] * n_split + sp[None, :]
    m = tl.load(m_ptr + idx, mask=ok, other=float("-inf"))
    s = tl.load(s_ptr + idx, mask=ok, other=0.0)
    a = tl.load(a_ptr + idx, mask=ok, other=0.0)
    zt = tl.reduce(tl.load(zt_ptr + idx, mask=ok, other=0.0), 1, _sum_combine)
    mx = tl.reduce(m, 1, _elementwise_max)
    d = tl.where(ok, m - mx[:, None], 0.0)
    sc = tl.where(ok, tl.exp(d), 0.0)
    big_s = tl.reduce(s * sc, 1, _sum_combine)
    big_a = tl.reduce(sc * (a + d * s), 1, _sum_combine)
    log_s = tl.log(big_s)
    ent = log_s - big_a / big_s
    logp = (zt - mx) - log_s  # as log_softmax does: z - max is exact near the max, lse = max + log_s is not
    tgt = tl.load(t_ptr + rows, mask=row_ok, other=ignore_index)
    ign = tgt == ignore_index
    tl.store(logp_ptr + rows, tl.where(ign, 0.0, logp), mask=row_ok)
    tl.store(ent_ptr + rows, tl.where(ign, 0.0, ent), mask=row_ok)
    tl.store(lse_ptr + rows, mx, mask=row_ok)
    tl.store(lse_ptr + N + rows, log_s, mask=row_ok)


def _dlogits_kernel(h_ptr, w_ptr, z_ptr, t_ptr, lse_ptr, ent_ptr, gl_ptr, ge_ptr, dz_ptr,
                    N, N_ALL, v_lo, v_hi, H, stride_h, stride_w, stride_z, stride_dz, temperature, ignore_index,
                    RECOMPUTE: tl.constexpr, HAS_GE: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """dz[r, c - v_lo] = dL/dlogits[r, c] for columns c in [v_lo, v_hi) (already divided by T).

    dL/dz_j = -q_j (g_logp + g_ent (log q_j + H)) + [j == t] g_logp with z = logits / T.
    """
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = v_lo + tl.program_id(1) * BN + tl.arange(0, BN)
    row_ok = rows < N
    col_ok = cols < v_hi
    if RECOMPUTE:
        acc = tl.full([BM, BN], 0.0, tl.float32)
        for k0 in range(0, H, BK):
            ks = k0 + tl.arange(0, BK)
            k_ok = ks < H
            a = tl.load(h_ptr + rows[:, None] * stride_h + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(w_ptr + cols[:, None] * stride_w + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            if IEEE:
                acc = tl.dot(a, tl.trans(b), acc, input_precision="ieee")
            else:
                acc = tl.dot(a, tl.trans(b), acc)
        z = acc / temperature
    else:
        z = tl.load(z_ptr + rows[:, None] * stride_z + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
    tgt = tl.load(t_ptr + rows, mask=row_ok, other=ignore_index)
    keep = (tgt != ignore_index) & row_ok
    mx = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    log_s = tl.load(lse_ptr + N_ALL + rows, mask=row_ok, other=0.0)
    gl = tl.where(keep, tl.load(gl_ptr + rows, mask=row_ok, other=0.0), 0.0)
    logq = (z - mx[:, None]) - log_s[:, None]
    q = tl.exp(logq)
    if HAS_GE:
        ge = tl.where(keep, tl.load(ge_ptr + rows, mask=row_ok, other=0.0), 0.0)
        ent = tl.load(ent_ptr + rows, mask=row_ok, other=0.0)
        dz = -q * (gl[:, None] + ge[:, None] * (logq + ent[:, None]))
    else:
        dz = -q * gl[:, None]
    dz = dz + tl.where(cols[None, :] == tgt[:, None], gl[:, None], 0.0)
    dz = dz / temperature
    out = dz_ptr + rows[:, None] * stride_dz + (cols - v_lo)[None, :]
    tl.store(out, dz.to(dz_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


def _flags(hidden: torch.Tensor) -> dict:
    return dict(UPCAST=interpreting(), IEEE=hidden.dtype == torch.float32)


def _stats(hidden, weight, targets, temperature, ignore_index, z_buf=None):
    """Launch stats + combine on rows of `hidden`; z_buf (fp32 [n, V]) receives the logits if given."""
    n, hdim = hidden.shape
    v = weight.shape[0]
    cfg = tiles(hidden.dtype, hidden.device)
    per, n_split = _split(v, cfg.bn)
    dev = hidden.device
    m, s, a, zt = (torch.empty(n, n_split, dtype=torch.float32, device=dev) for _ in range(4))
    store = z_buf is not None
    z_arg = z_buf if store else m
    kernel(_stats_kernel)[(triton.cdiv(n, cfg.bm), n_split)](
        hidden, weight, targets, z_arg, m, s, a, zt,
        n, v, hdim, hidden.stride(0), weight.stride(0), z_arg.stride(0), n_split, float(temperature),
        TILES_PER_PROG=per, STORE_Z=store, BM=cfg.bm, BN=cfg.bn, BK=cfg.bk,
        num_warps=cfg.warps, num_stages=cfg.stages, **_flags(hidden))
    logp, ent = (torch.empty(n, dtype=torch.float32, device=dev) for _ in range(2))
    lse = torch.empty(2, n, dtype=torch.float32, device=dev)  # (row max, log sum exp(z - max)) per row
    br = 16 if interpreting() else 64
    kernel(_combine_kernel)[(triton.cdiv(n, br),)](
        m, s, a, zt, targets, logp, ent, lse, n, n_split, ignore_index,
        BR=br, BS=triton.next_power_of_2(n_split))
    return logp, ent, lse


def _dlogits(hidden, weight, targets, z_buf, lse, ent, g_logp, g_ent, dz, v_lo, v_hi, temperature, ignore_index):
    n, hdim = hidden.shape
    cfg = tiles(hidden.dtype, hidden.device)
    recompute = z_buf is None
    z_arg = dz if recompute else z_buf
    has_ge = g_ent is not None
    kernel(_dlogits_kernel)[(triton.cdiv(n, cfg.bm), triton.cdiv(v_hi - v_lo, cfg.bn))](
        hidden, weight, z_arg, targets, lse, ent, g_logp, g_ent if has_ge else g_logp, dz,
        n, lse.shape[1], v_lo, v_hi, hdim, hidden.stride(0), weight.stride(0), z_arg.stride(0), dz.stride(0),
        float(temperature), ignore_index,
        RECOMPUTE=recompute, HAS_GE=has_ge, BM=cfg.bm, BN=cfg.bn, BK=cfg.bk,
        num_warps=cfg.warps, num_stages=cfg.stages, **_flags(hidden))


def _dz_store_dtype(hidden: torch.Tensor) -> torch.dtype:
    # the interpreter's fp32 -> bf16 store does not round to nearest: store fp32 and let torch round
    return torch.float32 if interpreting() else hidden.dtype


_MIXED_ADDMM: dict[tuple, bool] = {}  # (device, input dtype) -> cuBLAS takes bf16/fp16 inputs into an fp32 output


def mixed_addmm_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `aten.addmm.dtype_out` (low-precision inputs, fp32 output) runs here, checked once by a tiny call
    against the fp32 product: builds without the kernel raise, and a wrong result counts as unsupported."""
    key = (str(device), dtype)
    if key not in _MIXED_ADDMM:
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(16, 32, device=device, generator=g).to(dtype)
        b = torch.randn(32, 8, device=device, generator=g).to(dtype)
        acc = torch.ones(16, 8, device=device)
        try:
            torch.ops.aten.addmm.dtype_out(acc, a, b, torch.float32, out=acc)
            ok = torch.allclose(acc, 1 + a.float() @ b.float(), atol=1e-4)
        except (RuntimeError, NotImplementedError):
            ok = False
        _MIXED_ADDMM[key] = ok
    return _MIXED_ADDMM[key]


def _addmm_fp32(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor, rows: int = 4096) -> None:
    """acc += a @ b with fp32 accumulation: on CUDA with no fp32 copy of a or b when cuBLAS can (the probe above),
    else through fp32 copies of `rows` rows of a at a time, which bounds the extra memory."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    elif acc.is_cuda and mixed_addmm_supported(acc.device, a.dtype):
        torch.ops.aten.addmm.dtype_out(acc, a, b, acc.dtype, out=acc)
    else:
        b32 = b.to(acc.dtype)
        for r0 in range(0, a.shape[0], rows):
            acc[r0:r0 + rows].addmm_(a[r0:r0 + rows].to(acc.dtype), b32)


def _contig(hidden, weight, targets):
    return hidden.contiguous(), weight.contiguous(), targets.contiguous()


def forward(hidden, weight, targets, temperature: float, ignore_index: int):
    """(logp, entropy, lse), fp32 [N], [N], [2, N]: lse holds (row max, log-sum-exp of z - max)."""
    hidden, weight, targets = _contig(hidden, weight, targets)
    return _stats(hidden, weight, targets, temperature, ignore_index)


BWD_BUFFER_BYTES = 512 * 2**20


def backward(hidden, weight, targets, lse, ent, g_logp, g_ent: Optional[torch.Tensor], temperature: float,
             ignore_index: int):
    """(grad_hidden, grad_weight) in vocab slices: dz[:, slice] is recomputed for all rows, so
    grad_weight[slice] = dz^T h is a single GEMM (one rounding) and only grad_hidden accumulates (fp32)."""
    hidden, weight, targets = _contig(hidden, weight, targets)
    n, hdim = hidden.shape
    v = weight.shape[0]
    cfg = tiles(hidden.dtype, hidden.device)
    g_logp = g_logp.float().contiguous()
    g_ent = None if g_ent is None else g_ent.float().contiguous()
    elt = hidden.element_size()
    vc = max(cfg.bn, (BWD_BUFFER_BYTES // max(1, n * elt)) // cfg.bn * cfg.bn)
    vc = min(vc, triton.cdiv(v, cfg.bn) * cfg.bn)
    dz_buf = torch.empty(n, vc, dtype=_dz_store_dtype(hidden), device=hidden.device)
    grad_h = torch.zeros(n, hdim, dtype=torch.float32, device=hidden.device)
    grad_w = torch.empty_like(weight)
    for v_lo in range(0, v, vc):
        v_hi = min(v, v_lo + vc)
        dz = dz_buf[:, : v_hi - v_lo]
        _dlogits(hidden, weight, targets, None, lse, ent, g_logp, g_ent, dz, v_lo, v_hi, temperature, ignore_index)
        dz = dz.to(hidden.dtype)
        torch.mm(dz.T, hidden, out=grad_w[v_lo:v_hi])
        _addmm_fp32(grad_h, dz, weight[v_lo:v_hi])
    return grad_h.to(hidden.dtype), grad_w


FUSED_BUFFER_BYTES = 1024 * 2**20


def forward_backward(hidden, weight, targets, temperature: float, ignore_index: int, grad_fn: GradFn):
    """Loss-in-forward: per token chunk the stats kernel also stores the fp32 logits, grad_fn turns
    logp into dL/dlogp, dlogits come from the stored logits, then dz @ W and dz^T h: 3 GEMMs."""
    hidden, weight, targets = _contig(hidden, weight, targets)
    n, hdim = hidden.shape
    v = weight.shape[0]
    cfg = tiles(hidden.dtype, hidden.device)
    # chunk starts are multiples of the row tile so each row sits in the same tile as in forward()
    rows = max(cfg.bm, (FUSED_BUFFER_BYTES // (v * (4 + hidden.element_size()))) // cfg.bm * cfg.bm)
    rows = min(rows, triton.cdiv(n, cfg.bm) * cfg.bm)
    dev = hidden.device
    z_buf = torch.empty(rows, v, dtype=torch.float32, device=dev)
    dz_buf = torch.empty(rows, v, dtype=_dz_store_dtype(hidden), device=dev)
    logp = torch.empty(n, dtype=torch.float32, device=dev)
    ent = torch.empty(n, dtype=torch.float32, device=dev)
    grad_h = torch.empty_like(hidden)
    grad_w = torch.zeros(v, hdim, dtype=torch.float32, device=dev)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        h, t = hidden[r0:r1], targets[r0:r1]
        lp, en, lse = _stats(h, weight, t, temperature, ignore_index, z_buf=z_buf)
        logp[r0:r1], ent[r0:r1] = lp, en
        gl, ge = grad_fn(r0, r1, lp, en)
        gl = gl.float().contiguous()
        ge = None if ge is None else ge.float().contiguous()
        dz = dz_buf[: r1 - r0]
        _dlogits(h, weight, t, z_buf, lse, en, gl, ge, dz, 0, v, temperature, ignore_index)
        dz = dz.to(hidden.dtype)
        torch.mm(dz, weight, out=grad_h[r0:r1])
        _addmm_fp32(grad_w, dz.T, h)
    return logp, ent, grad_h, grad_w.to(weight.dtype)
