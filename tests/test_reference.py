"""CPU tests of pymoe.reference (NumPy only): the element encoders against hand-computed vectors
and independent scalar models (SPEC §2: subnormals, ties, saturation), the NVFP4 block quantizer
against a scalar per-block model, the 128x4 scale swizzle, and moe_forward against a naive
per-token loop of SPEC §1 written here in float64 with its own decoders.

Note: conftest.py makes `import pymoe` find an installed package first; to test the source
tree's reference without reinstalling, run `python -m pytest --noconftest tests/test_reference.py`.
"""
import math

import numpy as np
import pytest

from pymoe import reference as R

rng = np.random.default_rng(2026)
f32 = np.float32

# ---- independent scalar models (no pymoe.reference code) ------------------------------------------
E2M1_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def e4m3_value(b: int) -> float:
    """e4m3fn byte -> Python float, from the format definition."""
    s, e, m = b >> 7, (b >> 3) & 15, b & 7
    if e == 15 and m == 7:
        return math.nan
    v = math.ldexp(m, -9) if e == 0 else math.ldexp(8 + m, e - 10)
    return -v if s else v


E4M3_TABLE = np.array([e4m3_value(b) for b in range(256)], np.float64)
E2M1_TABLE = np.array(E2M1_VALUES + [-v for v in E2M1_VALUES], np.float64)


def e4m3_encode_scalar(v: float) -> int:
    """RNE, satfinite, exact subnormals, via frexp and Python's round-half-even."""
    sign = 0x80 if math.copysign(1.0, v) < 0 else 0
    a = abs(v)
    if math.isnan(a):
        return 0x7F | sign
    if a >= 448.0:
        return 0x7E | sign
    if a < 2.0 ** -6:
        return round(a * 512.0) | sign  # m * 2^-9; 8 gives 0x08 = 2^-6
    mant, e = math.frexp(a)  # a = mant * 2^e, mant in [0.5, 1)
    r = round(mant * 16)     # 8..16: 3 mantissa bits, ties to even
    if r == 16:
        r, e = 8, e + 1
    return min(((e - 1 + 7) << 3) | (r - 8), 0x7E) | sign


def e2m1_encode_scalar(v: float) -> int:
    """Nearest e2m1 magnitude, ties to the even code (mantissa LSB 0), saturating; sign bit kept."""
    sign = 8 if math.copysign(1.0, v) < 0 else 0
    a = abs(v)
    if math.isnan(a) or a >= 6:
        return 7 | sign
    d = [abs(a - g) for g in E2M1_VALUES]
    best = min(d)
    cands = [i for i in range(8) if d[i] == best]
    return (cands[0] if len(cands) == 1 else [c for c in cands if c % 2 == 0][0]) | sign


def quant_block_scalar(b, gs):
    """SPEC §2 for one block, in float32 scalars: (16 codes, scale byte)."""
    gs = f32(gs)
    amax = f32(0)
    for v in b:
        if not np.isnan(v):
            amax = max(amax, f32(abs(f32(v))))
    if amax == 0 or gs == 0:
        return [0] * 16, 0
    t = f32(f32(amax / f32(6)) / gs)
    sf = e4m3_encode_scalar(float(t))
    d = f32(E4M3_TABLE[sf])
    if d == 0:
        return [0] * 16, sf
    denom = f32(d * gs)
    codes = []
    for v in b:
        qv = f32(f32(v) / denom)
        codes.append(7 if np.isnan(qv) else e2m1_encode_scalar(float(qv)))
    return codes, sf


def deq_naive(q, sf, gs):
    """codes [rows, K/2] + row-major scales [rows, K/16] -> float64 [rows, K], elementwise."""
    rows, half = q.shape
    out = np.empty((rows, 2 * half))
    out[:, 0::2] = E2M1_TABLE[q & 15]
    out[:, 1::2] = E2M1_TABLE[q >> 4]
    return out * np.repeat(np.abs(E4M3_TABLE[sf]), 16, axis=1) * float(gs)


def sorted_grid_midpoints():
    vals = sorted(set(E2M1_VALUES))
    return [(lo + hi) / 2 for lo, hi in zip(vals, vals[1:])]


# ---- e2m1 -----------------------------------------------------------------------------------------
def test_e2m1_decode_every_code():
    want = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
    got = R.e2m1_decode(np.arange(16, dtype=np.uint8))
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert np.signbit(got[8]) and not np.signbit(got[0])
    assert np.array_equal(R.e2m1_decode(np.arange(16, 32)), want)  # only the low nibble is read


@pytest.mark.parametrize("v,code", [
    (0.25, 0), (0.75, 2), (1.25, 2), (1.75, 4), (2.5, 4), (3.5, 6), (5.0, 6),  # ties to even
    (7.0, 7), (6.0, 7), (1e30, 7), (np.inf, 7), (-np.inf, 15),                 # saturation
    (-0.1, 8), (-0.0, 8), (0.0, 0), (-0.25, 8), (1e-45, 0),                   # signed zero
    (0.26, 1), (0.74, 1), (-5.1, 15), (1.3, 3), (2.6, 5), (3.49, 5), (4.99, 6), (-1.75, 12),
    (np.nan, 7), (-np.nan, 15),                                                 # NaN saturates
])
def test_e2m1_encode_ties_and_saturation(v, code):
    assert R.e2m1_encode(f32(v)) == code


def test_e2m1_encode_matches_scalar_model_around_every_midpoint():
    pts = []
    for m in sorted_grid_midpoints() + E2M1_VALUES + [6.5, 100.0]:
        c = f32(m)
        pts += [np.nextafter(c, f32(0)), c, np.nextafter(c, f32(np.inf))]
    pts = np.array(pts + list(rng.uniform(-8, 8, 2000)), np.float32)
    pts = np.concatenate([pts, -pts])
    got = R.e2m1_encode(pts)
    want = np.array([e2m1_encode_scalar(float(v)) for v in pts], np.uint8)
    assert got.dtype == np.uint8 and got.shape == pts.shape
    assert np.array_equal(got, want)


def test_e2m1_roundtrip_and_shape():
    c = np.arange(16, dtype=np.uint8)
    assert np.array_equal(R.e2m1_encode(R.e2m1_decode(c)), c)
    assert R.e2m1_encode(np.zeros((3, 4, 5), np.float32)).shape == (3, 4, 5)


# ---- e4m3 -----------------------------------------------------------------------------------------
def test_e4m3_decode_all_256_codes():
    v = R.e4m3_decode(np.arange(256, dtype=np.uint8))
    assert v.dtype == np.float32
    assert v[0x01] == 2.0 ** -9 and v[0x07] == 7 * 2.0 ** -9 and v[0x08] == 2.0 ** -6
    assert v[0x38] == 1.0 and v[0x7E] == 448.0 and v[0xFE] == -448.0 and v[0x39] == 1.125
    assert v[0x80] == 0 and np.signbit(v[0x80]) and v[0x81] == -(2.0 ** -9)
    assert np.isnan(v[0x7F]) and np.isnan(v[0xFF]) and np.isnan(v).sum() == 2
    assert np.array_equal(v, E4M3_TABLE.astype(np.float32), equal_nan=True)
    assert np.all(np.diff(v[:0x7F]) > 0)  # monotone over the positive codes


@pytest.mark.parametrize("v,code", [
    (2.0 ** -10, 0x00), (1.5 * 2.0 ** -10, 0x01), (3 * 2.0 ** -10, 0x02),       # subnormal ties
    (2.5 * 2.0 ** -9, 0x02), (0.9 * 2.0 ** -10, 0x00), (1.01 * 2.0 ** -10, 0x01),
    (7.5 * 2.0 ** -9, 0x08),                     # subnormal/normal boundary tie -> even (2^-6)
    (2.0 ** -6, 0x08), (1.0625, 0x38), (1.1875, 0x3A), (1.0625 + 2 ** -20, 0x39),
    (432.0, 0x7E), (431.9, 0x7D), (448.0, 0x7E), (449.0, 0x7E), (464.0, 0x7E), (1e9, 0x7E),
    (np.inf, 0x7E), (-np.inf, 0xFE), (0.0, 0x00), (-0.0, 0x80), (-1.0, 0xB8), (-(2.0 ** -11), 0x80),
    (np.nan, 0x7F),
])
def test_e4m3_encode_ties_subnormals_saturation(v, code):
    assert R.e4m3_encode(f32(v)) == code


def test_e4m3_roundtrip_every_finite_code():
    c = np.array([b for b in range(256) if b & 0x7F != 0x7F], np.uint8)
    assert np.array_equal(R.e4m3_encode(R.e4m3_decode(c)), c)


def test_e4m3_encode_matches_scalar_model():
    pos = E4M3_TABLE[:0x7F]
    mids = (pos[1:] + pos[:-1]) / 2  # every tie, exact in float32
    pts = []
    for m in np.concatenate([mids, pos, [460.0, 464.0, 480.0, 3e38]]).astype(np.float32):
        pts += [np.nextafter(m, f32(0)), m, np.nextafter(m, f32(np.inf))]
    wide = np.exp2(rng.uniform(-14, 10, 3000)).astype(np.float32)
    pts = np.concatenate([np.array(pts, np.float32), wide])
    pts = np.concatenate([pts, -pts])
    got = R.e4m3_encode(pts)
    want = np.array([e4m3_encode_scalar(float(v)) for v in pts], np.uint8)
    assert np.array_equal(got, want)


# ---- bf16 -----------------------------------------------------------------------------------------
def test_bf16_round_ties_to_even_and_specials():
    x = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, 1.0, -2.5, -(1 + 2 ** -8),
                  3.4028235e38, np.inf, -np.inf, 1e-40], np.float32)
    want = np.array([1.0, 1 + 2 ** -6, 1 + 2 ** -7, 1.0, -2.5, -1.0, np.inf, np.inf, -np.inf,
                     R.bf16_bits_to_float32(np.uint16(np.float32(1e-40).view(np.uint32) >> 16))], np.float32)
    got = R.bf16_round(x)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert R.float32_to_bf16_bits(f32(1.0)) == 0x3F80 and R.float32_to_bf16_bits(f32(1.0)).shape == ()
    n = R.float32_to_bf16_bits(np.array([np.nan, -np.nan], np.float32))
    assert np.isnan(R.bf16_bits_to_float32(n)).all() and (n[0] >> 15) == 0 and (n[1] >> 15) == 1


def test_bf16_every_bit_pattern_roundtrips():
    b = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    v = R.bf16_bits_to_float32(b)
    finite = ~np.isnan(v)
    assert np.array_equal(R.float32_to_bf16_bits(v)[finite], b[finite])
    assert np.isnan(R.bf16_round(v[~finite])).all()


# ---- NVFP4 blocks ---------------------------------------------------------------------------------
def test_all_zero_block_and_zero_global_scale():
    q, sf = R.quantize_nvfp4(np.zeros((2, 32), np.float32), 1.0)
    assert q.shape == (2, 16) and sf.shape == (2, 2) and not q.any() and not sf.any()
    q, sf = R.quantize_nvfp4(rng.standard_normal((2, 32)).astype(np.float32), 0.0)
    assert not q.any() and not sf.any()
    q, sf = R.quantize_nvfp4(-np.zeros((1, 16), np.float32), 1.0)  # -0 block: amax 0 -> +0 codes
    assert not q.any() and not sf.any()


def test_block_with_unit_scale():
    b = np.array([[6, -6, 3, 1.5, 0.5, 0, 4, 2, 1, -1, -0.5, 0.25, 0.75, 5, -3, 2.5]], np.float32)
    q, sf = R.quantize_nvfp4(b, 1.0)
    assert sf[0, 0] == 0x38  # amax 6 -> scale 1.0
    back = R.dequantize_nvfp4(q, sf, 1.0, 16)
    assert back.dtype == np.float64
    want = [6, -6, 3, 1.5, 0.5, 0, 4, 2, 1, -1, -0.5, 0, 1, 4, -3, 2]  # .25->0, .75->1, 5->4, 2.5->2
    assert np.array_equal(back[0], np.array(want, np.float64))


def test_subnormal_scale_block_is_exact():
    b = np.full((1, 16), 6 * 2.0 ** -8, np.float32)  # amax / 6 = 2^-8 = e4m3 0x02 (subnormal)
    b[0, 1::2] = -3 * 2.0 ** -8
    b[0, 2] = 0.5 * 2.0 ** -8
    q, sf = R.quantize_nvfp4(b, 1.0)
    assert sf[0, 0] == 0x02
    assert np.array_equal(R.dequantize_nvfp4(q, sf, 1.0, 16)[0], b[0].astype(np.float64))
    # with gs = 2^-4 the same block needs scale 2^-4 = 0x18 (normal) and is still exact
    q, sf = R.quantize_nvfp4(b, 2.0 ** -4)
    assert sf[0, 0] == 0x18
    assert np.array_equal(R.dequantize_nvfp4(q, sf, 2.0 ** -4, 16)[0], b[0].astype(np.float64))


def test_scale_below_half_subnormal_gives_zero_block():
    # amax / 6 = 2^-10 is the tie between 0 and 2^-9: rounds to the even code 0 -> all codes 0
    q, sf = R.quantize_nvfp4(np.full((1, 16), 6 * 2.0 ** -10, np.float32), 1.0)
    assert sf[0, 0] == 0 and not q.any()
    # amax / 6 = 1.5 * 2^-10 rounds up to 2^-9 (0x01): each 9 * 2^-10 / 2^-9 = 4.5 -> 4 (code 6)
    q, sf = R.quantize_nvfp4(np.full((1, 16), 9 * 2.0 ** -10, np.float32), 1.0)
    assert sf[0, 0] == 0x01 and np.all(q == 0x66)


def test_saturated_scale_and_large_values():
    b = np.zeros((1, 16), np.float32)
    b[0, 0], b[0, 1], b[0, 2] = 1e30, -1e30, 1.0
    q, sf = R.quantize_nvfp4(b, 1.0)
    assert sf[0, 0] == 0x7E  # t = 1.67e29 -> satfinite 448
    c = R.unpack_codes(q)[0]
    assert c[0] == 7 and c[1] == 15 and c[2] == 0 and c[3] == 0
    q, sf = R.quantize_nvfp4(np.full((1, 16), np.inf, np.float32), 1.0)
    assert sf[0, 0] == 0x7E and np.all(q == 0x77)


def test_nan_elements_follow_the_kernel():
    # fmaxf skips NaN in amax; the GPU's NaN quotient is the canonical +NaN -> code 7
    b = np.array([[np.nan, -np.nan, 6, -3] + [0] * 12], np.float32)
    q, sf = R.quantize_nvfp4(b, 1.0)
    c = R.unpack_codes(q)[0]
    assert sf[0, 0] == 0x38 and list(c[:4]) == [7, 7, 7, 13]
    q, sf = R.quantize_nvfp4(np.full((1, 16), np.nan, np.float32), 1.0)
    assert sf[0, 0] == 0 and not q.any()  # amax = 0
    q, sf = R.quantize_nvfp4(np.ones((1, 16), np.float32), np.nan)
    assert sf[0, 0] == 0x7E and np.all(q == 0x77)
    q, sf = R.quantize_nvfp4(np.ones((1, 16), np.float32), np.inf)
    assert sf[0, 0] == 0 and not q.any()


def test_exact_division_at_e2m1_ties():
    # sf = 0x37 (0.9375): each b_i / 0.9375 is exactly a tie; a reciprocal multiply (b * (1/d))
    # lands above it and would round the other way (SPEC §2: no rcp.approx)
    b = np.zeros((1, 16), np.float32)
    b[0, :5] = [5.625, 1.171875, 2.34375, 4.6875, -0.703125]  # 6, 1.25, 2.5, 5, -0.75 times 0.9375
    q, sf = R.quantize_nvfp4(b, 1.0)
    assert sf[0, 0] == 0x37
    assert list(R.unpack_codes(q)[0, :5]) == [7, 2, 4, 6, 10]  # 6, 1 (even), 2 (even), 4 (even), -1


def test_scale_divides_by_6_then_by_gs():
    # amax / 6 = 35 * 2^-11 exactly; / float32(0.7) lands on (not above) the tie between 0x0C
    # (0.0234375) and 0x0D (0.025390625) -> even 0x0C. amax / (6 * gs) would give 0x0D.
    q, sf = R.quantize_nvfp4(np.full((1, 16), 105 / 1024, np.float32), np.float32(0.7))
    assert sf[0, 0] == 0x0C
    t_wrong = f32(105 / 1024) / (f32(6) * f32(0.7))
    assert R.e4m3_encode(t_wrong) == 0x0D


def test_packing_order_low_nibble_first():
    b = np.zeros((1, 16), np.float32)
    b[0, 0], b[0, 1], b[0, 15] = 6.0, 0.5, -1.0
    q, _ = R.quantize_nvfp4(b, 1.0)
    assert q[0, 0] == (7 | (1 << 4)) and q[0, 7] == (0 | (10 << 4))
    assert np.array_equal(R.pack_codes(R.unpack_codes(q)), q)


@pytest.mark.parametrize("gs", [1.0, 0.0137, 3e-5, 2.0 ** -20, 1234.5])
def test_quantize_matches_scalar_block_model(gs):
    rows, cols = 23, 64
    x = (rng.standard_normal((rows, cols)) * np.exp(rng.uniform(-14, 8, (rows, 1)))).astype(np.float32)
    x[0, :16] = 0
    x[1, 3] = -0.0
    x[2, :16] = R.bf16_round(x[2, :16] * f32(1e-6))  # subnormal-ish scales for most gs
    q, sf = R.quantize_nvfp4(x, gs)
    codes = R.unpack_codes(q)
    for r in range(rows):
        for c in range(cols // 16):
            want_c, want_s = quant_block_scalar(x[r, 16 * c:16 * c + 16], gs)
            assert sf[r, c] == want_s, (r, c)
            assert list(codes[r, 16 * c:16 * c + 16]) == want_c, (r, c)


def test_dequantize_matches_naive_and_requantize_is_identity():
    rows, cols = 40, 96
    q = rng.integers(0, 256, (rows, cols // 2), dtype=np.uint8)
    c = R.unpack_codes(q)
    c[:, ::16] = np.where(rng.random((rows, cols // 16)) < 0.5, 7, 15)  # a ±6 in every block
    q = R.pack_codes(c)
    sf = rng.integers(0x01, 0x7F, (rows, cols // 16)).astype(np.uint8)
    gs = 2.0 ** -5  # power of two: every dequantized value is exact in float32
    d = R.dequantize_nvfp4(q, sf, gs, cols)
    assert np.array_equal(d, deq_naive(q, sf, gs))
    q2, sf2 = R.quantize_nvfp4(d.astype(np.float32), gs)
    assert np.array_equal(sf2, sf) and np.array_equal(q2, q)
    # the scale's sign bit is ignored (unsigned scale use)
    assert np.array_equal(R.dequantize_nvfp4(q, sf | 0x80, gs, cols), d)


def test_swizzled_quantizer_output():
    x = rng.standard_normal((130, 48)).astype(np.float32)
    q, sf = R.quantize_nvfp4(x, 0.01)
    q2, sf2 = R.quantize_nvfp4(x, 0.01, "swizzled")
    assert np.array_equal(q, q2)
    assert sf2.ndim == 1 and sf2.size == R.scale_bytes(130, 48, "swizzled") == 256 * 4
    assert np.array_equal(sf2, R.swizzle_scales(sf, 48))
    assert np.array_equal(R.dequantize_nvfp4(q2, sf2, 0.01, 48, "swizzled"),
                          R.dequantize_nvfp4(q, sf, 0.01, 48))


def test_quantizer_argument_errors():
    with pytest.raises(ValueError, match="x"):
        R.quantize_nvfp4(np.zeros((2, 20), np.float32), 1.0)
    with pytest.raises(ValueError, match="x"):
        R.quantize_nvfp4(np.zeros(32, np.float32), 1.0)
    with pytest.raises(ValueError, match="gs"):
        R.quantize_nvfp4(np.zeros((2, 32), np.float32), -1.0)
    with pytest.raises(ValueError, match="scale_layout"):
        R.quantize_nvfp4(np.zeros((2, 32), np.float32), 1.0, "col_major")
    with pytest.raises(ValueError, match="q"):
        R.dequantize_nvfp4(np.zeros((2, 8), np.uint8), np.zeros((2, 1), np.uint8), 1.0, 32)
    with pytest.raises(ValueError, match="sf"):
        R.dequantize_nvfp4(np.zeros((2, 16), np.uint8), np.zeros((2, 1), np.uint8), 1.0, 32)


# ---- swizzle ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,c,off", [
    (0, 0, 0), (1, 0, 16), (31, 0, 496), (32, 0, 4), (64, 0, 8), (96, 1, 13), (0, 3, 3),
    (127, 3, 511), (0, 4, 512), (5, 6, 594), (128, 0, 1024), (129, 1, 1041), (199, 4, 1656),
    (255, 7, 2047),
])
def test_swizzle_offsets_by_hand(m, c, off):
    assert R.swizzle_offset(m, c, 80) == off  # K = 80: 5 scale columns -> C4 = 8


def test_scale_bytes():
    assert R.scale_bytes(200, 80, "row_major") == 1000
    assert R.scale_bytes(200, 80, "swizzled") == 256 * 8
    assert R.scale_bytes(128, 64, "swizzled") == 512
    assert R.scale_bytes(1, 16, "swizzled") == 512
    assert R.scale_bytes(0, 64, "swizzled") == 0
    with pytest.raises(ValueError, match="layout"):
        R.scale_bytes(1, 16, "tiled")


def test_swizzle_roundtrip_non_multiple_of_128_rows():
    sf = rng.integers(1, 255, (200, 5)).astype(np.uint8)
    flat = R.swizzle_scales(sf, 80)
    assert flat.dtype == np.uint8 and flat.shape == (R.scale_bytes(200, 80, "swizzled"),)
    assert np.array_equal(R.unswizzle_scales(flat, 200, 80), sf)
    m, c = np.meshgrid(np.arange(200), np.arange(5), indexing="ij")
    used = np.zeros(flat.size, bool)
    used[R.swizzle_offset(m, c, 80)] = True
    assert used.sum() == 1000 and not flat[~used].any()  # distinct offsets; padding is zero
    assert flat[1656] == sf[199, 4] and flat[4] == sf[32, 0]


def test_swizzle_is_a_bijection_on_full_tiles():
    m, c = np.meshgrid(np.arange(256), np.arange(8), indexing="ij")
    off = R.swizzle_offset(m, c, 128)
    assert np.array_equal(np.sort(off.ravel()), np.arange(256 * 8))
    # one 32-bit word holds one row's 4 consecutive scale columns
    assert np.all(off[:, 0::4] % 4 == 0) and np.all(np.diff(off.reshape(256, 2, 4), axis=2) == 1)


# ---- the layer ---------------------------------------------------------------------------------------
def make_problem(E=4, k=2, H=64, I=64, T=5, seed=0):
    r = np.random.default_rng(seed)
    w13 = r.integers(0, 256, (E, 2 * I, H // 2), dtype=np.uint8)
    s13 = r.integers(0x30, 0x40, (E, 2 * I, H // 16)).astype(np.uint8)
    s13[0, 0, 0] = 0x03  # a subnormal weight scale
    w2 = r.integers(0, 256, (E, H, I // 2), dtype=np.uint8)
    s2 = r.integers(0x30, 0x40, (E, H, I // 16)).astype(np.uint8)
    g13 = r.uniform(0.01, 0.03, E).astype(np.float32)
    g2 = r.uniform(0.01, 0.03, E).astype(np.float32)
    x = R.bf16_round(r.standard_normal((T, H)).astype(np.float32))
    ids = np.stack([r.permutation(E)[:k] for _ in range(T)]).astype(np.int32)
    tw = r.uniform(0.1, 1, (T, k)).astype(np.float32)
    return [x, ids, tw, w13, s13, g13, w2, s2, g2]


F1, F2 = np.float32(0.004), np.float32(0.01)  # ~ amax / (6 * 448) for x and for a


def naive_forward(x, ids, tw, w13, s13, g13, w2, s2, g2, f1, f2, offset=0, act="nvfp4",
                  order="up_gate"):
    """SPEC §1 token by token, slot by slot, with this file's decoders and block quantizer."""
    T, H = x.shape
    E_local, I = w13.shape[0], w13.shape[1] // 2
    f1 = np.atleast_1d(np.asarray(f1, np.float32))
    f2 = np.atleast_1d(np.asarray(f2, np.float32))
    pick = lambda s, el: s[0] if s.size == 1 else (s[el] if s.size == E_local else s[el + offset])

    def qdq(v, gs):  # quantize + dequantize a vector with the scalar block model
        out = np.empty(v.size)
        for b in range(v.size // 16):
            codes, sf = quant_block_scalar(v[16 * b:16 * b + 16], gs)
            out[16 * b:16 * b + 16] = E2M1_TABLE[codes] * E4M3_TABLE[sf] * float(gs)
        return out

    out = np.zeros((T, H), np.float32)
    k = ids.shape[1]
    inter = {"h": np.zeros((T, k, 2 * I), np.float32), "a": np.zeros((T, k, I), np.float32),
             "y": np.zeros((T, k, H), np.float32)}
    for t in range(T):
        acc = np.zeros(H, np.float32)
        for j in range(ids.shape[1]):
            el = int(ids[t, j]) - offset
            if not 0 <= el < E_local:
                continue
            W13 = deq_naive(w13[el], s13[el], g13[el])
            W2 = deq_naive(w2[el], s2[el], g2[el])
            xd = qdq(x[t], pick(f1, el)) if act == "nvfp4" else x[t].astype(np.float64)
            h = np.array([np.dot(W13[r], xd) for r in range(2 * I)])
            up, g = (h[:I], h[I:]) if order == "up_gate" else (h[I:], h[:I])
            a = np.array([gi / (1 + math.exp(-gi)) * ui for gi, ui in zip(g, up)]).astype(np.float32)
            ad = qdq(a, pick(f2, el)) if act == "nvfp4" else R.bf16_round(a).astype(np.float64)
            y = np.array([np.dot(W2[r], ad) for r in range(H)]).astype(np.float32)
            acc = (acc + (tw[t, j] * y).astype(np.float32)).astype(np.float32)
            inter["h"][t, j], inter["a"][t, j], inter["y"][t, j] = h, a, y
        out[t] = acc
    return R.bf16_round(out), inter


def rel_l2(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def assert_intermediates_match(it, want):
    """h, a, y bitwise equal but for float64 summation-order residue: a float32 rounding flip
    (1 ulp) or, where the exact sum cancels to ~0, an absolute difference of ~1e-16."""
    for name in ("h", "a", "y"):
        got, ref = it[name].astype(np.float64), want[name].astype(np.float64)
        assert np.mean(got == ref) > 0.99, name
        assert np.all(np.abs(got - ref) <= 2.0 ** -23 * np.abs(ref) + 1e-12), name


@pytest.mark.parametrize("act", ["nvfp4", "none"])
def test_moe_forward_matches_naive_loop(act):
    p = make_problem()
    got, it = R.moe_forward(*p, F1, F2, act_quant=act, return_intermediates=True)
    want, want_it = naive_forward(*p, F1, F2, act=act)
    assert got.dtype == np.float32 and got.shape == (5, 64)
    assert np.abs(got).max() > 0 and np.array_equal(R.bf16_round(got), got)
    # bitwise for these fixed seeds: the float64 sums differ only in order (BLAS vs np.dot per
    # row), far below the float32 rounding of h and y
    assert np.array_equal(got, want)
    assert_intermediates_match(it, want_it)
    assert np.array_equal(R.moe_forward(*p, F1, F2, act_quant=act, return_intermediates=False), got)


def test_moe_forward_naive_per_expert_scales_and_gate_up():
    p = make_problem(E=4, k=3, T=6, seed=1)
    f1 = np.array([0.003, 0.004, 0.005, 0.006], np.float32)
    f2 = np.array([0.02, 0.01, 0.015, 0.012], np.float32)
    got, it = R.moe_forward(*p, f1, f2, gate_up_order="gate_up", return_intermediates=True)
    want, want_it = naive_forward(*p, f1, f2, order="gate_up")
    assert np.array_equal(got, want)
    assert_intermediates_match(it, want_it)


def test_x_is_rounded_to_bf16():
    p = make_problem(seed=11)
    x = p[0] * np.float32(1 + 2 ** -12)  # not bf16 values any more
    assert not np.array_equal(R.bf16_round(x), x)
    assert np.array_equal(R.moe_forward(x, *p[1:], F1, F2), R.moe_forward(R.bf16_round(x), *p[1:], F1, F2))


def test_intermediates():
    p = make_problem(T=7, k=3, seed=2)
    p[1][0, 1] = -1
    out, it = R.moe_forward(*p, F1, F2, return_intermediates=True)
    assert set(it) >= {"h", "a", "y", "local", "acc"}
    assert it["h"].shape == (7, 3, 128) and it["a"].shape == (7, 3, 64) and it["y"].shape == (7, 3, 64)
    assert it["local"].dtype == bool and it["local"].sum() == 20 and not it["local"][0, 1]
    assert not it["h"][0, 1].any() and not it["y"][0, 1].any()
    assert np.array_equal(R.bf16_round(it["acc"]), out)
    # a = silu(gate) * up from h (the float32 copy of h differs from float64 by < 1 ulp)
    h = it["h"].astype(np.float64)
    a = h[..., 64:] / (1 + np.exp(-h[..., 64:])) * h[..., :64]
    assert np.allclose(it["a"], a, rtol=1e-5, atol=1e-30)
    acc = np.zeros((7, 64), np.float32)
    for j in range(3):
        acc = np.where(it["local"][:, j:j + 1], acc + p[2][:, j:j + 1] * it["y"][:, j], acc)
    assert np.array_equal(acc, it["acc"])


def test_invalid_ids_contribute_nothing():
    x, ids, tw, *w = make_problem(E=4, k=2, T=6, seed=3)
    ids = ids.copy()
    ids[0] = [-1, 4]       # padding and an id == E: the token gets exactly 0
    ids[1, 1] = 10 ** 6
    ids[2, 0] = -7
    out = R.moe_forward(x, ids, tw, *w, F1, F2)
    assert not out[0].any() and not np.signbit(out[0]).any()
    keep, tw0 = ids.copy(), tw.copy()
    for t, j in [(0, 0), (0, 1), (1, 1), (2, 0)]:
        keep[t, j], tw0[t, j] = 0, 0.0
    assert np.array_equal(out, R.moe_forward(x, keep, tw0, *w, F1, F2))
    assert np.array_equal(out[3:], R.moe_forward(x[3:], ids[3:], tw[3:], *w, F1, F2))  # batch invariance
    # int64 ids and bf16-valued weights are accepted
    assert np.array_equal(out, R.moe_forward(x, ids.astype(np.int64), tw, *w, F1, F2))


@pytest.mark.parametrize("act", ["nvfp4", "none"])
def test_expert_parallel_shards_sum_to_unsharded(act):
    x, ids, tw, w13, s13, g13, w2, s2, g2 = make_problem(E=8, k=3, T=9, seed=4)
    ids[0, 2] = -1
    f1 = np.linspace(0.003, 0.005, 8).astype(np.float32)  # per expert, global indexing
    f2 = np.linspace(0.01, 0.02, 8).astype(np.float32)
    out, full = R.moe_forward(x, ids, tw, w13, s13, g13, w2, s2, g2, f1, f2, act_quant=act,
                              return_intermediates=True)
    parts = []
    for lo in (0, 4):
        sl = slice(lo, lo + 4)
        w = (w13[sl], s13[sl], g13[sl], w2[sl], s2[sl], g2[sl])
        o, it = R.moe_forward(x, ids, tw, *w, f1, f2, num_experts=8, local_expert_offset=lo,
                              act_quant=act, return_intermediates=True)
        # the shard's slice of per-expert scales (E_local values) means the same
        assert np.array_equal(o, R.moe_forward(x, ids, tw, *w, f1[sl], f2[sl], num_experts=8,
                                               local_expert_offset=lo, act_quant=act))
        parts.append((o, it))
    (o0, i0), (o1, i1) = parts
    assert not (i0["local"] & i1["local"]).any() and np.array_equal(i0["local"] | i1["local"], full["local"])
    assert np.array_equal(i0["y"] + i1["y"], full["y"])  # each slot is computed by exactly one shard
    assert np.array_equal(i0["h"] + i1["h"], full["h"])
    # the all-reduce sums in another order: within float32 rounding before bf16, 1 bf16 ulp after
    acc = i0["acc"].astype(np.float64) + i1["acc"]
    scale = np.abs(i0["acc"]).astype(np.float64) + np.abs(i1["acc"]) + 1e-30
    assert np.all(np.abs(acc - full["acc"]) <= 4 * 2.0 ** -24 * 3 * scale)
    summed = R.bf16_round((o0 + o1).astype(np.float32))
    ulp = np.exp2(np.floor(np.log2(np.maximum(np.abs(out), 1e-30)))) * 2.0 ** -7
    assert np.all(np.abs(summed - out) <= 2 * ulp + 2 * 2.0 ** -8 * (np.abs(o0) + np.abs(o1)))


def test_gate_up_order_equivalence():
    I = 64
    x, ids, tw, w13, s13, g13, w2, s2, g2 = make_problem(H=128, I=I, seed=5)
    swap = lambda a: np.ascontiguousarray(np.concatenate([a[:, I:], a[:, :I]], axis=1))
    for act in ("nvfp4", "none"):
        base = R.moe_forward(x, ids, tw, w13, s13, g13, w2, s2, g2, F1, F2, act_quant=act)
        assert np.array_equal(base, R.moe_forward(x, ids, tw, swap(w13), swap(s13), g13, w2, s2, g2,
                                                  F1, F2, act_quant=act, gate_up_order="gate_up"))
    sw = lambda s, k: np.stack([R.swizzle_scales(e, k) for e in s])
    assert np.array_equal(base, R.moe_forward(x, ids, tw, swap(w13), sw(swap(s13), 128), g13, w2,
                                              sw(s2, I), g2, F1, F2, act_quant="none",
                                              gate_up_order="gate_up", scale_layout="swizzled"))


def test_swizzled_and_row_major_layouts_agree():
    x, ids, tw, w13, s13, g13, w2, s2, g2 = make_problem(E=3, H=96, I=80, T=6, seed=6)  # K/16 = 6, 5
    base = R.moe_forward(x, ids, tw, w13, s13, g13, w2, s2, g2, F1, F2)
    sw13 = np.stack([R.swizzle_scales(s, 96) for s in s13])
    sw2 = np.stack([R.swizzle_scales(s, 80) for s in s2])
    assert sw13.shape == (3, R.scale_bytes(160, 96, "swizzled"))
    assert np.array_equal(base, R.moe_forward(x, ids, tw, w13, sw13, g13, w2, sw2, g2, F1, F2,
                                              scale_layout="swizzled"))


def test_act_quant_none_path():
    p = make_problem(seed=7)
    a = R.moe_forward(*p, F1, F2, act_quant="none")
    assert np.array_equal(a, R.moe_forward(*p, None, None, act_quant="none"))  # scales unused
    b = R.moe_forward(*p, F1, F2, act_quant="nvfp4")
    assert not np.array_equal(a, b) and rel_l2(b, a) < 0.3  # W4A4 vs W4A16: close, not equal
    _, it = R.moe_forward(*p, F1, F2, act_quant="none", return_intermediates=True)
    ad = R.bf16_round(it["a"]).astype(np.float64)
    e = p[1][0, 0]
    W2 = deq_naive(p[6][e], p[7][e], p[8][e])
    assert np.allclose(it["y"][0, 0], ad[0, 0] @ W2.T, rtol=1e-6, atol=1e-12)


def test_scalar_vs_per_expert_input_scales():
    p = make_problem(E=4, seed=8)
    a = R.moe_forward(*p, F1, F2)
    assert np.array_equal(a, R.moe_forward(*p, np.full(4, F1), np.full(4, F2)))
    assert np.array_equal(a, R.moe_forward(*p, np.array([F1]), np.array([[F2]])))
    assert np.array_equal(a, R.moe_forward(*p, float(F1), float(F2)))
    c = R.moe_forward(*p, np.array([F1, 0.5, F1, F1], np.float32), F2)
    uses1 = np.any(p[1] == 1, axis=1)
    assert uses1.any() and not np.array_equal(a[uses1], c[uses1])
    assert np.array_equal(a[~uses1], c[~uses1])  # only tokens routed to expert 1 change
    # E (global) values on a shard: expert el reads [el + offset]
    x, ids, tw, w13, s13, g13, w2, s2, g2 = p
    f1g = np.array([9.0, 9.0, 0.003, 0.005], np.float32)
    sh = lambda f: R.moe_forward(x, ids, tw, w13[2:], s13[2:], g13[2:], w2[2:], s2[2:], g2[2:], f, F2,
                                 num_experts=4, local_expert_offset=2)
    assert np.array_equal(sh(f1g), sh(f1g[2:]))


def test_empty_batch_and_no_local_slots():
    x, ids, tw, *w = make_problem(seed=9)
    out = R.moe_forward(x[:0], ids[:0], tw[:0], *w, F1, F2)
    assert out.shape == (0, 64) and out.dtype == np.float32
    out = R.moe_forward(x, np.full_like(ids, -1), tw, *w, F1, F2)
    assert out.shape == x.shape and not out.any()


def test_argument_errors_name_the_argument():
    x, ids, tw, w13, s13, g13, w2, s2, g2 = make_problem(seed=10)
    good = dict(x=x, topk_ids=ids, topk_weights=tw, w13=w13, w13_scale=s13, w13_global_scale=g13,
                w2=w2, w2_scale=s2, w2_global_scale=g2, fc1_input_scale=F1, fc2_input_scale=F2)
    bad = [
        ("x", dict(x=x[0])),
        ("x", dict(x=x[:, :40])),
        ("topk_ids", dict(topk_ids=ids.astype(np.float32))),
        ("topk_ids", dict(topk_ids=ids[:3])),
        ("topk_weights", dict(topk_weights=tw[:, :1])),
        ("w13", dict(w13=w13.astype(np.int8))),
        ("w13", dict(w13=w13[:, :, :8])),
        ("w13_scale", dict(w13_scale=s13[:, :, :2])),
        ("w2", dict(w2=w2[:, :32])),
        ("w2_scale", dict(w2_scale=s2.astype(np.int16))),
        ("w13_global_scale", dict(w13_global_scale=g13[:2])),
        ("w2_global_scale", dict(w2_global_scale=-g2)),
        ("fc1_input_scale", dict(fc1_input_scale=np.ones(3, np.float32))),
        ("fc2_input_scale", dict(fc2_input_scale=None)),
    ]
    for name, change in bad:
        with pytest.raises(ValueError, match=name):
            R.moe_forward(**{**good, **change})
    for name, kw in [("act_quant", dict(act_quant="fp8")), ("gate_up_order", dict(gate_up_order="ug")),
                     ("scale_layout", dict(scale_layout="tiled")),
                     ("local_expert_offset", dict(local_expert_offset=1)),
                     ("local_expert_offset", dict(num_experts=8, local_expert_offset=5))]:
        with pytest.raises(ValueError, match=name):
            R.moe_forward(**good, **kw)
    with pytest.raises(ValueError, match="w13_scale"):  # swizzled bytes of the wrong size
        R.moe_forward(**good, scale_layout="swizzled")
