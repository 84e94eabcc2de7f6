"""engine.native partitioning: native == Python == a naive reference, partition quality vs brute force, bad inputs."""
import importlib.util
import itertools
import math
import random
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import native


def naive_kk(lengths: list[int], k: int, equal_size: bool) -> list[list[int]]:
    """Karmarkar-Karp written the plain way (all k sets stored, item lists copied) with the documented ties."""
    def key(s):  # s = (sum, items); empty sets sort last
        return (-s[0], -len(s[1]), min(s[1]) if s[1] else math.inf)

    def heap_key(state, seq):
        return (-(state[0][0] - state[-1][0]), -state[0][0], seq)

    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    group = k if equal_size else 1
    states = []
    for seq, off in enumerate(range(0, len(order), group)):
        sets = [(lengths[i], [i]) for i in order[off:off + group]] + [(0, [])] * (k - group)
        states.append((sorted(sets, key=key), seq))
    seq = len(states)
    while len(states) > 1:
        states.sort(key=lambda e: heap_key(*e))
        (a, _), (b, _) = states[0], states[1]
        merged = sorted(((a[i][0] + b[k - 1 - i][0], a[i][1] + b[k - 1 - i][1]) for i in range(k)), key=key)
        states = states[2:] + [(merged, seq)]
        seq += 1
    if not states:
        return [[] for _ in range(k)]
    return [sorted(items) for _, items in states[0][0]]


def naive_ffd(lengths: list[int], max_tokens: int) -> list[list[int]]:
    bins, load = [], []
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        b = next((b for b in range(len(bins)) if load[b] + lengths[i] <= max_tokens), None)
        if b is None:
            bins.append([])
            load.append(0)
            b = len(bins) - 1
        bins[b].append(i)
        load[b] += lengths[i]
    return bins


def loads(lengths, parts):
    return [sum(lengths[i] for i in p) for p in parts]


def test_native_extension_is_built():
    # CI installs the package, which compiles csrc/; without it every equivalence test below is vacuous.
    assert native.BACKEND == "native", "engine._native is missing: run `python setup.py build_ext --inplace`"


lengths_st = st.lists(st.integers(0, 10**6), max_size=40)


@settings(max_examples=300, deadline=None)
@given(lengths=lengths_st, k=st.integers(1, 9), equal=st.booleans())
def test_native_kk_matches_python_and_naive(lengths, k, equal):
    if equal:
        lengths = lengths[: len(lengths) - len(lengths) % k]
    got = native.balanced_partition(lengths, k, equal_size=equal)
    assert got == native.balanced_partition_py(lengths, k, equal_size=equal)
    assert got == naive_kk(lengths, k, equal)
    assert len(got) == k
    assert sorted(itertools.chain.from_iterable(got)) == list(range(len(lengths)))
    assert all(p == sorted(p) for p in got)
    ld = loads(lengths, got)
    assert ld == sorted(ld, reverse=True)
    if equal:
        assert all(len(p) == len(lengths) // k for p in got)


@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.integers(0, 5000), max_size=60), budget=st.integers(1, 8000))
def test_native_ffd_matches_python_and_naive(lengths, budget):
    lengths = [min(n, budget) for n in lengths]
    got = native.pack_by_budget(lengths, budget)
    assert got == native.pack_by_budget_py(lengths, budget) == naive_ffd(lengths, budget)
    assert sorted(itertools.chain.from_iterable(got)) == list(range(len(lengths)))
    assert all(load <= budget for load in loads(lengths, got))
    assert len(got) >= math.ceil(sum(lengths) / budget)


def test_native_large_inputs_match_python():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 32768, size=20000)
    for k, equal in ((8, False), (16, True), (3, False)):
        assert native.balanced_partition(lengths, k, equal) == native.balanced_partition_py(lengths, k, equal)
    assert native.pack_by_budget(lengths, 65536) == native.pack_by_budget_py(lengths, 65536)


def test_native_accepts_lists_numpy_and_torch_alike():
    lengths = [7, 3, 3, 9, 0, 12, 5, 5]
    want = native.balanced_partition(lengths, 3)
    for x in (tuple(lengths), np.array(lengths, dtype=np.int32), np.array(lengths, dtype=np.uint16),
              torch.tensor(lengths), torch.tensor(lengths, dtype=torch.int32)):
        assert native.balanced_partition(x, 3) == want
        assert native.balanced_partition_py(x, 3) == want
        assert native.pack_by_budget(x, 12) == native.pack_by_budget_py(lengths, 12)


def test_native_deterministic_with_many_ties():
    lengths = [5] * 24 + [0] * 6
    first = native.balanced_partition(lengths, 4)
    assert all(native.balanced_partition(lengths, 4) == first for _ in range(3))
    assert first == native.balanced_partition_py(lengths, 4) == naive_kk(lengths, 4, False)


@pytest.mark.parametrize("impl", [native.balanced_partition, native.balanced_partition_py])
def test_native_kk_edge_cases(impl):
    assert impl([], 3) == [[], [], []]
    assert impl([], 2, equal_size=True) == [[], []]
    assert impl([42], 1) == [[0]]
    assert impl([4, 9], 5) == [[1], [0], [], [], []]  # k > n: one item per part, the rest empty
    assert impl([0, 0, 0], 2) in ([[0, 1], [2]], [[0], [1, 2]], [[0, 2], [1]], [[1, 2], [0]], [[2], [0, 1]], [[1], [0, 2]])
    huge = [2**61, 2**61, 2**61 - 1, 3]
    parts = impl(huge, 2)
    assert sorted(loads(huge, parts)) == [2**61 + 3, 2**62 - 1]
    with pytest.raises(ValueError, match="overflows int64"):
        impl([2**62, 2**62], 2)


@pytest.mark.parametrize("impl", [native.pack_by_budget, native.pack_by_budget_py])
def test_native_ffd_edge_cases(impl):
    assert impl([], 10) == []
    assert impl([0, 0], 1) == [[0, 1]]
    assert impl([2**62, 2**62], 2**62) == [[0], [1]]
    assert impl([3, 3, 4], 10) == [[2, 0, 1]]


@pytest.mark.parametrize("impl", [native.balanced_partition, native.balanced_partition_py])
@pytest.mark.parametrize("args, match", [
    (([1, -2, 3], 2), r"lengths\[1\] = -2 is negative"),
    (([1, 2], 0), "k must be >= 1"),
    (([1, 2], -3), "k must be >= 1"),
    (([1, 2], 1.5), "k must be an integer"),
    (([1, 2, 3], 2, True), "divisible by k"),
    (([1.0, 2.0], 2), "must hold integers"),
    (([[1, 2], [3, 4]], 2), "must be 1-D"),
    (([2**70], 1), "int64"),
    ((torch.tensor([1.5]), 1), "must hold integers"),
    ((["a", "b"], 1), "must hold integers"),
])
def test_native_kk_bad_inputs(impl, args, match):
    with pytest.raises(ValueError, match=match):
        impl(*args)


@pytest.mark.parametrize("impl", [native.pack_by_budget, native.pack_by_budget_py])
@pytest.mark.parametrize("args, match", [
    (([1, -2], 5), r"lengths\[1\] = -2 is negative"),
    (([1, 9], 5), r"lengths\[1\] = 9 exceeds max_tokens = 5"),
    (([1], 0), "max_tokens must be >= 1"),
    ((np.array([1.0]), 5), "must hold integers"),
])
def test_native_ffd_bad_inputs(impl, args, match):
    with pytest.raises(ValueError, match=match):
        impl(*args)


def brute_force_best(lengths, k, equal_size):
    """Optimal (largest part load, max/min load ratio) over all assignments, by enumeration."""
    best_max, best_ratio = math.inf, math.inf
    n = len(lengths)
    for assign in itertools.product(range(k), repeat=n):
        if assign[0] != 0:  # parts are interchangeable: fix the first item's part
            continue
        if equal_size and any(assign.count(p) != n // k for p in range(k)):
            continue
        load = [0] * k
        for i, p in enumerate(assign):
            load[p] += lengths[i]
        best_max = min(best_max, max(load))
        best_ratio = min(best_ratio, max(load) / min(load) if min(load) else math.inf)
    return best_max, best_ratio


def test_native_kk_quality_against_brute_force():
    # Largest part: largest differencing is within 4/3 - 1/(3k) of the optimum (Michiels et al. 2007);
    # with equal_size no theorem exists and 4/3 is asserted. Max/min load ratio: no theorem either; on
    # these fixed instances it stays within 1.25x of the best achievable ratio (measured worst: 1.12x).
    rng = random.Random(0)
    for trial in range(400):
        k = rng.choice([2, 3])
        equal = trial % 3 == 0
        n = rng.randint(k, 10 if k == 2 else 7)
        if equal:
            n -= n % k
        lengths = [rng.randint(1, 1000) for _ in range(n)]
        parts = native.balanced_partition(lengths, k, equal_size=equal)
        best_max, best_ratio = brute_force_best(lengths, k, equal)
        got_max, got_ratio = max(loads(lengths, parts)), native.load_ratio(lengths, parts)
        bound = 4 / 3 if equal else 4 / 3 - 1 / (3 * k)
        assert got_max <= bound * best_max, (lengths, k, equal, parts, best_max)
        assert got_ratio <= 1.25 * best_ratio, (lengths, k, equal, parts, got_ratio, best_ratio)


def test_native_kk_balances_large_batches():
    # Many items: KK's max/min load ratio is essentially 1 (greedy round-robin is far worse).
    rng = np.random.default_rng(1)
    lengths = rng.integers(500, 32768, size=4096)
    for k, equal in ((8, False), (8, True), (64, True)):
        parts = native.balanced_partition(lengths, k, equal_size=equal)
        assert native.load_ratio(lengths, parts) < 1.001
        contiguous = np.array_split(np.arange(len(lengths)), k)
        assert native.load_ratio(lengths, [c.tolist() for c in contiguous]) > native.load_ratio(lengths, parts)


def test_native_load_ratio():
    assert native.load_ratio([4, 2, 2], [[0], [1, 2]]) == 1.0
    assert native.load_ratio([4, 2], [[0], [1]]) == 2.0
    assert native.load_ratio([4, 2], [[0, 1], []]) == math.inf
    assert native.load_ratio([0, 0], [[0], [1]]) == 1.0


def test_native_module_falls_back_to_python_without_extension(monkeypatch):
    # Load a second copy of engine/native.py while engine._native cannot be imported.
    monkeypatch.delattr(engine, "_native", raising=False)
    monkeypatch.setitem(sys.modules, "engine._native", None)
    spec = importlib.util.spec_from_file_location("native_without_ext", native.__file__)
    fallback = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "native_without_ext", fallback)  # dataclasses look their module up
    spec.loader.exec_module(fallback)
    assert fallback.BACKEND == "python" and fallback._native is None
    lengths = [9, 1, 4, 4, 7, 0, 3]
    assert fallback.balanced_partition(lengths, 3) == native.balanced_partition(lengths, 3)
    assert fallback.pack_by_budget(lengths, 10) == native.pack_by_budget(lengths, 10)
    types = torch.tensor([[0, 2, 2, 2, 2, 0]])
    kw = dict(video_grid_thw=torch.tensor([[2, 2, 4]]), spatial_merge_size=2, tokens_per_second=2)
    for a, b in zip(fallback.mrope_position_ids(types, types, **kw), native.mrope_position_ids(types, types, **kw)):
        assert torch.equal(a, b)
