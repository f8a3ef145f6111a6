"""CPU check of the numeric argument behind nvfp4_block_decoded_bf16 (cpp/mainloop/activation_stage.cuh):
rounding |q| onto the e2m1 grid by one fp32 add and subtract of 2^22 / 2^23 / 2^24 (below 2 / 4 /
above), saturated at 6, gives exactly the value of the reference encoder's code, midpoints
included. numpy float32 arithmetic rounds to nearest even like the device's __fadd_rn / __fsub_rn;
the GPU suites check the kernel itself (static mma.sync == dynamic wgmma, bitwise)."""
import numpy as np

from pymoe import reference as R


def grid_round(q):
    q = np.asarray(q, np.float32)
    a = np.abs(q)
    m = np.where(a < 2, np.float32(2**22), np.where(a < 4, np.float32(2**23), np.float32(2**24))).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.fmin((a + m) - m, np.float32(6)).astype(np.float32)
    sign = q.view(np.uint32) & np.uint32(0x80000000)
    return (r.view(np.uint32) | sign).view(np.float32)


def _values():
    f = np.float32
    vals = []
    for g in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0):
        up, down = f(g), f(g)
        for _ in range(64):  # the point and its 63 neighbours on each side
            vals += [up, down]
            up, down = np.nextafter(up, f(np.inf)), np.nextafter(down, f(-np.inf))
    rng = np.random.default_rng(0)
    vals = np.concatenate([np.array(vals, np.float32), rng.uniform(0, 10, 100_000).astype(np.float32),
                           (2.0 ** rng.uniform(-149, 127, 50_000)).astype(np.float32),
                           np.array([np.inf, 3.4e38, 1e-45, np.nan], np.float32)])
    return np.concatenate([vals, -vals])


def test_grid_rounding_matches_e2m1_encode():
    v = _values()
    got = grid_round(v)
    want = R.e2m1_decode(R.e2m1_encode(v))
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), \
        v[got.view(np.uint32) != want.view(np.uint32)][:8]
