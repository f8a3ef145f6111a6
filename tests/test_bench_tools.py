"""CPU test (no GPU): the benchmark's no-cliff summary (bench/bench_moe.py) on made-up records."""
from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_moe", os.path.join(ROOT, "bench", "bench_moe.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # imports pymoe.demo only; torch is imported inside main()
    return mod


def _rec(shape, T, us, impl="moe12x"):
    return {"impl": impl, "shape": shape, "T": T, "time_us": us}


def test_smallest_time_ratio_finds_the_dip(bench):
    # a: grows everywhere; b: 1536 -> 2048 gets faster by 16 % (the session-6 dip before v19)
    recs = [_rec("a", 1024, 100.0), _rec("a", 1536, 130.0), _rec("a", 2048, 150.0),
            _rec("b", 1024, 3475.0), _rec("b", 1536, 6336.0), _rec("b", 2048, 5352.0),
            _rec("b", 1536, 1.0, impl="torch")]  # other impls are ignored
    worst = bench.smallest_time_ratios(recs, ["a", "b", "c"])
    assert set(worst) == {"a", "b"}  # no records, no entry
    assert worst["a"] == pytest.approx((150.0 / 130.0, 1536, 2048))
    r, t1, t2 = worst["b"]
    assert (t1, t2) == (1536, 2048) and r < bench.CLIFF_RATIO


def test_cliff_grid_is_sorted_half_octaves(bench):
    T = bench.CLIFF_T
    assert T == sorted(T) and T[0] == 128 and T[-1] == 8192
    assert all(1.3 < b / a < 1.6 for a, b in zip(T, T[1:]))
