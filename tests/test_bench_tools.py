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


def test_point_inputs_are_seeded_by_the_point_alone(bench):
    # a stand-in for torch: records the seed each point's generator gets
    class _Gen:
        def __init__(self, device):
            self.seed = None

        def manual_seed(self, s):
            self.seed = s

    class _Torch:
        Generator = _Gen

    seed = lambda *a: bench.point_generator(_Torch, *a).seed  # noqa: E731
    assert seed(0, "qwen3-30b-a3b", 32) == seed(0, "qwen3-30b-a3b", 32)  # any sweep order
    points = [(s, shape, T) for s in (0, 1) for shape in ("qwen3-30b-a3b", "deepseek-v3")
              for T in (-1, 1, 2, 16, 32, 128, 2048)]
    assert len({seed(*p) for p in points}) == len(points)
    assert all(0 <= seed(*p) < 2**32 for p in points)
