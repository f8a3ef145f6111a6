"""CPU tests of pymoe.reference against hand-computed vectors (SPEC §2) and a naive per-token
model of SPEC §1."""
import numpy as np
import pytest

from pymoe import reference as R

rng = np.random.default_rng(2026)


# ---- e2m1 -----------------------------------------------------------------------------------------
def test_e2m1_decode_every_code():
    want = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]
    got = R.e2m1_decode(np.arange(16))
    assert np.array_equal(got, np.array(want, np.float32))
    assert np.signbit(got[8])


@pytest.mark.parametrize("v,code", [(0.25, 0), (0.75, 2), (1.25, 2), (1.75, 4), (2.5, 4), (3.5, 6),
                                    (5.0, 6), (7.0, 7), (np.inf, 7), (-0.1, 8), (-0.0, 8), (0.26, 1),
                                    (0.74, 1), (-5.1, 15), (1.3, 3), (2.6, 5)])
def test_e2m1_encode_ties_and_saturation(v, code):
    assert R.e2m1_encode(np.float32(v)) == code


def test_e2m1_roundtrip():
    c = np.arange(16, dtype=np.uint8)
    assert np.array_equal(R.e2m1_encode(R.e2m1_decode(c)), c)


# ---- e4m3 -----------------------------------------------------------------------------------------
def test_e4m3_decode_all_codes():
    v = R.e4m3_decode(np.arange(256))
    assert v[0x01] == 2.0 ** -9 and v[0x07] == 7 * 2.0 ** -9 and v[0x08] == 2.0 ** -6
    assert v[0x38] == 1.0 and v[0x7E] == 448.0 and v[0xFE] == -448.0
    assert np.isnan(v[0x7F]) and np.isnan(v[0xFF])
    finite = v[:0x7F]
    assert np.all(np.diff(finite) > 0)  # monotone over the positive codes


@pytest.mark.parametrize("v,code", [(2.0 ** -10, 0x00), (1.5 * 2.0 ** -10, 0x01), (3 * 2.0 ** -10, 0x02),
                                    (2.0 ** -6, 0x08), (1.0625, 0x38), (1.1875, 0x3A), (464.0, 0x7E),
                                    (1e9, 0x7E), (np.inf, 0x7E), (0.0, 0x00), (-1.0, 0xB8)])
def test_e4m3_encode_ties_subnormals_saturation(v, code):
    assert R.e4m3_encode(np.float32(v)) == code


def test_e4m3_roundtrip():
    c = np.arange(0x7F, dtype=np.uint8)
    assert np.array_equal(R.e4m3_encode(R.e4m3_decode(c)), c)


def test_bf16_round_ties_to_even():
    x = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1.0, -2.5], np.float32)
    assert np.array_equal(R.bf16_round(x), np.array([1.0, 1 + 2 ** -6, 1.0, -2.5], np.float32))
    assert R.float32_to_bf16_bits(np.float32(1.0)) == 0x3F80


# ---- NVFP4 blocks --------------------------------------------------------------------------------
def test_all_zero_block_and_zero_global_scale():
    q, sf = R.quantize_nvfp4(np.zeros((1, 16), np.float32), 1.0)
    assert not q.any() and not sf.any()
    q, sf = R.quantize_nvfp4(np.ones((1, 16), np.float32), 0.0)
    assert not q.any() and not sf.any()


def test_block_with_unit_scale():
    b = np.array([[6, -6, 3, 1.5, 0.5, 0, 4, 2, 1, -1, -0.5, 0.25, 0.75, 5, -3, 2.5]], np.float32)
    q, sf = R.quantize_nvfp4(b, 1.0)
    assert sf[0, 0] == 0x38  # amax 6 -> scale 1.0
    back = R.dequantize_nvfp4(q, sf, 1.0, 16)[0]
    want = [6, -6, 3, 1.5, 0.5, 0, 4, 2, 1, -1, -0.5, 0, 1, 4, -3, 2]
    assert np.array_equal(back, np.array(want, np.float64))


def test_subnormal_scale_block_is_exact():
    b = np.full((1, 16), 6 * 2.0 ** -8, np.float32)  # amax / 6 = 2^-8 = e4m3 0x02 (subnormal)
    b[0, 1::2] = -3 * 2.0 ** -8
    q, sf = R.quantize_nvfp4(b, 1.0)
    assert sf[0, 0] == 0x02
    assert np.array_equal(R.dequantize_nvfp4(q, sf, 1.0, 16)[0], b[0].astype(np.float64))


def test_packing_order_low_nibble_first():
    b = np.zeros((1, 16), np.float32)
    b[0, 0], b[0, 1] = 6.0, 0.5
    q, _ = R.quantize_nvfp4(b, 1.0)
    assert q[0, 0] == (7 | (1 << 4))


def test_quantize_matches_naive_block_loop():
    x = (rng.standard_normal((37, 64)) * np.exp(rng.uniform(-12, 6, (37, 1)))).astype(np.float32)
    gs = np.float32(0.0137)
    q, sf = R.quantize_nvfp4(x, gs)
    for r in range(37):
        for c in range(4):
            blk = x[r, 16 * c:16 * c + 16]
            t = np.float32(np.float32(np.abs(blk).max()) / np.float32(6)) / gs
            s = R.e4m3_encode(np.float32(t))
            assert sf[r, c] == s
            d = np.float32(R.e4m3_decode(s)) * gs
            codes = R.e2m1_encode((blk / d).astype(np.float32)) if d != 0 else np.zeros(16, np.uint8)
            assert np.array_equal(R.unpack_codes(q[r, 8 * c:8 * c + 8]), codes)


# ---- swizzle ---------------------------------------------------------------------------------------
def test_swizzle_offsets_by_hand():
    k = 80  # 5 scale columns -> C4 = 8
    assert R.swizzle_offset(0, 0, k) == 0
    assert R.swizzle_offset(1, 0, k) == 16
    assert R.swizzle_offset(32, 0, k) == 4
    assert R.swizzle_offset(0, 3, k) == 3
    assert R.swizzle_offset(0, 4, k) == 512
    assert R.swizzle_offset(128, 0, k) == 1024
    assert R.swizzle_offset(199, 4, k) == (1 * 2 + 1) * 512 + (199 % 32) * 16 + ((199 % 128) // 32) * 4


def test_swizzle_roundtrip_non_multiple_of_128_rows():
    sf = rng.integers(1, 255, (200, 5)).astype(np.uint8)
    flat = R.swizzle_scales(sf, 80)
    assert flat.size == R.scale_bytes(200, 80, "swizzled") == 256 * 8
    assert np.array_equal(R.unswizzle_scales(flat, 200, 80), sf)
    used = np.zeros(flat.size, bool)
    m, c = np.meshgrid(np.arange(200), np.arange(5), indexing="ij")
    used[R.swizzle_offset(m, c, 80)] = True
    assert not flat[~used].any()  # padding is zero


# ---- the layer ---------------------------------------------------------------------------------------
def _problem(E=4, k=2, H=64, I=64, T=5):
    w13 = rng.integers(0, 256, (E, 2 * I, H // 2), dtype=np.uint8)
    s13 = rng.integers(0x28, 0x40, (E, 2 * I, H // 16)).astype(np.uint8)
    w2 = rng.integers(0, 256, (E, H, I // 2), dtype=np.uint8)
    s2 = rng.integers(0x28, 0x40, (E, H, I // 16)).astype(np.uint8)
    g13 = rng.uniform(0.01, 0.03, E).astype(np.float32)
    g2 = rng.uniform(0.01, 0.03, E).astype(np.float32)
    x = R.bf16_round(rng.standard_normal((T, H)).astype(np.float32))
    ids = np.stack([rng.permutation(E)[:k] for _ in range(T)])
    tw = rng.uniform(0.1, 1, (T, k)).astype(np.float32)
    return x, ids, tw, w13, s13, g13, w2, s2, g2


def _naive(x, ids, tw, w13, s13, g13, w2, s2, g2, f1, f2, offset=0, act="nvfp4"):
    T, H = x.shape
    I = w13.shape[1] // 2
    out = np.zeros((T, H), np.float32)
    for t in range(T):
        acc = np.zeros(H, np.float32)
        for j in range(ids.shape[1]):
            el = ids[t, j] - offset
            if not 0 <= el < w13.shape[0]:
                continue
            W13 = R.dequantize_nvfp4(w13[el], s13[el], g13[el], H)
            W2 = R.dequantize_nvfp4(w2[el], s2[el], g2[el], I)
            if act == "nvfp4":
                xd = R.dequantize_nvfp4(*R.quantize_nvfp4(x[t:t + 1], f1), f1, H)[0]
            else:
                xd = x[t].astype(np.float64)
            h = W13 @ xd
            a = (h[I:] / (1 + np.exp(-h[I:])) * h[:I]).astype(np.float32)
            if act == "nvfp4":
                ad = R.dequantize_nvfp4(*R.quantize_nvfp4(a[None], f2), f2, I)[0]
            else:
                ad = R.bf16_round(a).astype(np.float64)
            acc = (acc + np.float32(tw[t, j]) * (W2 @ ad).astype(np.float32)).astype(np.float32)
        out[t] = acc
    return R.bf16_round(out)


@pytest.mark.parametrize("act", ["nvfp4", "none"])
def test_moe_forward_matches_naive_loop(act):
    p = _problem()
    f1, f2 = np.float32(0.004), np.float32(0.02)
    got = R.moe_forward(*p, f1, f2, act_quant=act)
    assert np.array_equal(got, _naive(*p, f1, f2, act=act))
    assert np.abs(got).max() > 0


def test_invalid_ids_contribute_nothing():
    x, ids, tw, *w = _problem(E=4, k=2, T=6)
    ids = ids.copy()
    ids[0] = [-1, 4]        # padding and an id >= E: the token gets exactly 0
    ids[1, 1] = 10 ** 6
    out = R.moe_forward(x, ids, tw, *w, 0.01, 0.02)
    assert not out[0].any()
    keep = ids.copy(); tw2 = tw.copy(); tw2[1, 1] = 0; keep[1, 1] = 0
    ref = R.moe_forward(x, keep, tw2, *w, 0.01, 0.02)
    assert np.array_equal(out[1], ref[1])


def test_expert_parallel_shards_sum_to_unsharded():
    x, ids, tw, w13, s13, g13, w2, s2, g2 = _problem(E=8, k=3, T=9)
    full = R.moe_forward(x, ids, tw, w13, s13, g13, w2, s2, g2, 0.01, 0.02, return_intermediates=True)[1]
    parts = []
    for lo in (0, 4):
        sl = slice(lo, lo + 4)
        parts.append(R.moe_forward(x, ids, tw, w13[sl], s13[sl], g13[sl], w2[sl], s2[sl], g2[sl], 0.01, 0.02,
                                   num_experts=8, local_expert_offset=lo, return_intermediates=True)[1])
    y = parts[0]["y"] + parts[1]["y"]  # each slot is local to exactly one shard
    assert np.array_equal(y, full["y"])


def test_gate_up_order_and_swizzled_layout_equivalence():
    x, ids, tw, w13, s13, g13, w2, s2, g2 = _problem(H=128, I=64)
    base = R.moe_forward(x, ids, tw, w13, s13, g13, w2, s2, g2, 0.01, 0.02)
    I = 64
    swap = lambda a: np.concatenate([a[:, I:], a[:, :I]], axis=1)
    assert np.array_equal(base, R.moe_forward(x, ids, tw, swap(w13), swap(s13), g13, w2, s2, g2, 0.01, 0.02,
                                              gate_up_order="gate_up"))
    sw13 = np.stack([R.swizzle_scales(s, 128) for s in s13])
    sw2 = np.stack([R.swizzle_scales(s, 64) for s in s2])
    assert np.array_equal(base, R.moe_forward(x, ids, tw, w13, sw13, g13, w2, sw2, g2, 0.01, 0.02,
                                              scale_layout="swizzled"))


def test_scalar_vs_per_expert_input_scales():
    p = _problem(E=4)
    a = R.moe_forward(*p, np.float32(0.01), np.float32(0.02))
    b = R.moe_forward(*p, np.full(4, 0.01, np.float32), np.full(4, 0.02, np.float32))
    assert np.array_equal(a, b)
    c = R.moe_forward(*p, np.array([0.01, 0.5, 0.01, 0.01], np.float32), np.float32(0.02))
    assert not np.array_equal(a, c)
