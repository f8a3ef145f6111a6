"""NumPy reference of SPEC §1–2 (NumPy only; importable without the compiled extension).

Bit-exact element encoders, the NVFP4 block quantizer that the GPU kernels match bit for bit,
the 128x4 scale swizzle, and the full MoE forward (local expert ranges, invalid ids, both
activation modes, both gate/up orders, both scale layouts). Only ``numpy`` is imported, and no
relative imports are used, so this file also works loaded on its own.

API
---
Element formats (vectorized, any shape; the output keeps the input's shape):

- ``e2m1_decode(codes)``: nibble codes (only the low 4 bits are read) -> float32.
  ``0..7 = 0, .5, 1, 1.5, 2, 3, 4, 6``; ``8..15`` the same negated (code 8 is -0.0).
- ``e2m1_encode(v)``: float -> uint8 code. Round-to-nearest-even on the e2m1 grid, saturating at
  6 (inf too). Magnitude thresholds: ``|v| <= .25 -> 0; < .75 -> .5; <= 1.25 -> 1; < 1.75 -> 1.5;
  <= 2.5 -> 2; < 3.5 -> 3; <= 5 -> 4; else 6``. The sign bit is the IEEE sign bit of v, so a
  negative value that rounds to 0 (and -0.0) encodes as 8. **NaN saturates**: code ``7 | sign``.
  Inputs are first converted to float32.
- ``e4m3_decode(b)``: e4m3fn byte -> float32. Bias 7, subnormals ``m * 2^-9``, 0x7F/0xFF are
  NaN, the sign bit is honoured.
- ``e4m3_encode(v)``: float -> e4m3fn byte. Round-to-nearest-even (a tie goes to the code whose
  mantissa LSB is 0), satfinite (``|v| > 448`` and inf -> 448 with the sign), exact subnormals
  (``2^-10 -> 0``, ``1.5 * 2^-10 -> 0x01``, ``3 * 2^-10 -> 0x02``). NaN -> 0x7F (with its sign
  bit), like ``cvt.rn.satfinite.e4m3x2.f32``; the NVFP4 quantizer never passes it NaN (see below).
  Inputs are first converted to float32.
- ``bf16_round(x)``, ``float32_to_bf16_bits(x)``, ``bf16_bits_to_float32(u16)``: RNE float32 ->
  bf16 (overflow to inf as IEEE does; NaN stays NaN, quiet, sign kept).

NVFP4 (blocks of 16 along the last axis, one e4m3 scale per block, one float32 global scale gs):

- ``quantize_nvfp4(x, gs, scale_layout="row_major") -> (q, sf)``: x float32 [rows, cols],
  cols % 16 == 0. q uint8 [rows, cols/2] with element 2j in the low nibble and 2j+1 in the high
  nibble; sf uint8 [rows, cols/16] (row-major) or a flat uint8 array of ``scale_bytes(rows, cols,
  "swizzled")`` bytes (padding bytes 0). Per block b, all in float32, IEEE RNE at every step::

      amax = max_i |b_i|                         (NaN elements ignored, like fmaxf)
      if amax == 0 or gs == 0: sf = 0, every code 0
      t    = (amax / 6) / gs                     (two float32 divisions)
      sf   = e4m3_encode(t)                      (t >= 448, inf -> 0x7E = 448)
      d    = e4m3_decode(sf)
      if d == 0: every code 0                    (t < 2^-10 rounds to a zero scale)
      denom = d * gs                             (float32 multiply)
      q_i  = e2m1_encode(b_i / denom)            (float32 division; 0 if denom underflowed to 0)

  This is the order and the arithmetic of ``cpp/common/nvfp4.cuh`` (``__fdiv_rn``/``__fmul_rn``,
  no reciprocal approximation, no flush-to-zero). NaN elements: the kernel's ``fmaxf`` skips
  them in amax and the GPU's division returns the canonical (positive) NaN, so their code is 7
  (+6) whatever their sign; a gs that is NaN makes every code 7. gs must not be negative
  (ValueError); gs = inf gives zero scales and codes.
- ``dequantize_nvfp4(q, sf, gs, cols, scale_layout="row_major")``: float64 [rows, cols] =
  e2m1 * |e4m3| * gs (exact in float64). The scale's sign bit is ignored, as the ue4m3 scale
  type of the tensor cores and the weight preparation do; 0x7F/0xFF scales decode to NaN.
- ``scale_bytes(rows, k, layout)``: ``rows * (k/16)`` row-major; ``round_up(rows, 128) *
  round_up(k/16, 4)`` swizzled.
- ``swizzle_offset(m, c, k)``: byte offset of row m, scale column c in the 128x4 layout, with
  C4 = round_up(k/16, 4): ``((m // 128) * (C4 // 4) + c // 4) * 512 + (m % 32) * 16 +
  ((m % 128) // 32) * 4 + (c % 4)``.
- ``swizzle_scales(sf, k)`` [rows, k/16] -> flat uint8 (padding 0); ``unswizzle_scales(flat,
  rows, k)`` -> [rows, k/16].
- ``pack_codes(codes)`` [..., 2n] -> [..., n] and ``unpack_codes(packed)`` (low nibble first).

The layer (SPEC §1): ``moe_forward(x, topk_ids, topk_weights, w13, w13_scale, w13_global_scale,
w2, w2_scale, w2_global_scale, fc1_input_scale, fc2_input_scale, *, num_experts=None,
local_expert_offset=0, act_quant="nvfp4", gate_up_order="up_gate", scale_layout="row_major",
return_intermediates=False)``. For every token t and slot j whose id e lies in
[local_expert_offset, local_expert_offset + E_local) (anything else, -1 and ids >= E included,
contributes nothing), with el = e - local_expert_offset::

    xd  = deq(quant_nvfp4(bf16(x[t]), fc1[e]))  (act "nvfp4")  or  bf16(x[t])  (act "none")
    h   = xd @ deq(W13[el])ᵀ                      float64, length 2I
    up, g = h[:I], h[I:]   ("up_gate", the default)   |   g, up = h[:I], h[I:]   ("gate_up")
    a   = float32(g / (1 + exp(-g)) * up)         silu and product in float64
    ad  = deq(quant_nvfp4(a, fc2[e]))  (act "nvfp4")  or  bf16(a)  (act "none")
    y   = float32(ad @ deq(W2[el])ᵀ)              float64 product, length H
    acc = 0; for j increasing, local slots only: acc = float32(acc + float32(w[t, j] * y))
    out[t] = bf16(acc)

x is rounded to bf16 first (a no-op for bf16-valued input, which is what the GPU receives).
topk_weights are used as float32 (not rounded to bf16). fc1/fc2_input_scale hold 1, E_local or
E = num_experts values, picked like the kernels do: 1 value -> it; E_local values -> [el];
E values -> [e] (the global id). In act "none" they are not read (may be None). Each expert's
weights are dequantized once per call and tokens are grouped by expert, so the whole call costs
one float64 GEMM pair per expert over its routed rows. The result is float32 [T, H] holding bf16
values; with return_intermediates=True a dict follows: 'h' [T, k, 2I] (W13 row order), 'a'
[T, k, I], 'y' [T, k, H] (float32, zero where not computed), 'local' bool [T, k] and 'acc'
float32 [T, H] (the sum before the bf16 rounding).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "e2m1_decode", "e2m1_encode", "e4m3_decode", "e4m3_encode", "bf16_round", "float32_to_bf16_bits",
    "bf16_bits_to_float32", "quantize_nvfp4", "dequantize_nvfp4", "scale_bytes", "swizzle_offset",
    "swizzle_scales", "unswizzle_scales", "pack_codes", "unpack_codes", "moe_forward",
]

_LAYOUTS = ("row_major", "swizzled")

# ---- e2m1 ----------------------------------------------------------------------------------------
_E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)

# Magnitude thresholds as float32 bit patterns: code m = number of thresholds B_i <= bits(|v|).
# Midpoints that tie down to an even code (.25 -> 0, 1.25 -> 1, 2.5 -> 2, 5 -> 4) are compared
# strictly (bits + 1); those that tie up (.75 -> 1, 1.75 -> 2, 3.5 -> 4) inclusively. NaN bits
# exceed every threshold, so NaN saturates to 7.
_E2M1_BOUNDS = (np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], np.float32).view(np.uint32)
                + np.array([1, 0, 1, 0, 1, 0, 1], np.uint32)).astype(np.uint32)


def e2m1_decode(codes):
    """uint8 codes (low 4 bits read) -> float32 e2m1 values; code 8 is -0.0."""
    return _E2M1[np.asarray(codes).astype(np.int64) & 15]


def e2m1_encode(v):
    """float -> uint8 e2m1 code: RNE, saturating at 6 (inf and NaN too), sign = IEEE sign bit."""
    bits = np.asarray(v, np.float32).view(np.uint32)
    mag = bits & np.uint32(0x7FFFFFFF)
    m = np.zeros(bits.shape, np.uint8)
    for b in _E2M1_BOUNDS:
        m += mag >= b
    return m | ((bits >> np.uint32(31)).astype(np.uint8) << np.uint8(3))


# ---- e4m3 (fn) -----------------------------------------------------------------------------------
def _e4m3_table():
    b = np.arange(256, dtype=np.int64)
    e, m = (b >> 3) & 15, b & 7
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8) * np.exp2(e - 7.0))
    v = np.where((b & 0x7F) == 0x7F, np.nan, v)
    return np.where(b & 0x80, -v, v).astype(np.float32)


_E4M3 = _e4m3_table()
_E4M3_POS = _E4M3[:0x7F].astype(np.float64)  # codes 0x00..0x7E, strictly increasing, 0 .. 448
_E4M3_ABS64 = np.abs(_E4M3).astype(np.float64)  # the unsigned-scale view used by dequantization


def e4m3_decode(b):
    """e4m3fn bytes -> float32 (subnormals m * 2^-9, 0x7F/0xFF NaN, sign honoured)."""
    return _E4M3[np.asarray(b).astype(np.int64) & 0xFF]


def e4m3_encode(v):
    """float -> e4m3fn byte: RNE (ties to the even code), satfinite at ±448, exact subnormals.

    Implemented by enumeration: the two neighbouring representable magnitudes of |v| (exact in
    float64) are compared; a tie picks the even code, i.e. the mantissa LSB 0 (consecutive codes
    alternate their mantissa LSB, also across a binade boundary and the subnormal/normal one).
    """
    v = np.asarray(v, np.float32)
    a = np.abs(v).astype(np.float64)
    idx = np.clip(np.searchsorted(_E4M3_POS, a, side="left"), 1, len(_E4M3_POS) - 1)
    lo, hi = _E4M3_POS[idx - 1], _E4M3_POS[idx]
    dlo, dhi = a - lo, hi - a
    code = np.where((dlo > dhi) | ((dlo == dhi) & (idx % 2 == 0)), idx, idx - 1)
    code = np.where(a >= 448.0, 0x7E, code)  # satfinite, inf included
    code = np.where(a == 0.0, 0, code)
    code = np.where(np.isnan(v), 0x7F, code)
    return (code | np.where(np.signbit(v), 0x80, 0)).astype(np.uint8)


# ---- bf16 ----------------------------------------------------------------------------------------
def float32_to_bf16_bits(x):
    """float32 -> bf16 bits (uint16), round-to-nearest-even; NaN stays a quiet NaN with its sign."""
    u = np.asarray(x, np.float32).view(np.uint32)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    # no uint32 overflow for non-NaN inputs: the largest is 0xFF800000 + 0x8000
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    r = np.where(nan, (u >> np.uint32(16)) | np.uint32(0x40), r)
    return r.astype(np.uint16)


def bf16_bits_to_float32(b):
    """bf16 bits (uint16) -> float32 (exact)."""
    return (np.asarray(b).astype(np.uint32) << np.uint32(16)).view(np.float32)


def bf16_round(x):
    """float32 -> float32 holding the nearest-even bf16 value (NaN preserved)."""
    return bf16_bits_to_float32(float32_to_bf16_bits(x))


# ---- NVFP4 ---------------------------------------------------------------------------------------
def pack_codes(q):
    """[..., 2n] codes (0..15) -> [..., n] bytes: element 2j in the low nibble, 2j+1 in the high."""
    q = np.asarray(q, np.uint8)
    if q.shape[-1] % 2:
        raise ValueError(f"q: the last axis must be even, got shape {q.shape}")
    return ((q[..., 0::2] & 15) | ((q[..., 1::2] & 15) << 4)).astype(np.uint8)


def unpack_codes(p):
    """[..., n] bytes -> [..., 2n] codes (low nibble first)."""
    p = np.asarray(p, np.uint8)
    return np.stack([p & 15, p >> 4], -1).reshape(*p.shape[:-1], p.shape[-1] * 2)


def _check_layout(layout, name="scale_layout"):
    if layout not in _LAYOUTS:
        raise ValueError(f"{name}: expected 'row_major' or 'swizzled', got {layout!r}")


def scale_bytes(rows, k, layout="row_major"):
    """Bytes of the block scales of a [rows, k] NVFP4 matrix in the given layout."""
    _check_layout(layout, "layout")
    rows, k = int(rows), int(k)
    if rows < 0 or k < 0 or k % 16:
        raise ValueError(f"k: expected rows >= 0 and k a non-negative multiple of 16, got rows={rows}, k={k}")
    if layout == "row_major":
        return rows * (k // 16)
    return (rows + 127) // 128 * 128 * ((k // 16 + 3) // 4 * 4)


def swizzle_offset(m, c, k):
    """Byte offset of (row m, scale column c) in the 128x4 swizzled layout of a K = k matrix."""
    m, c = np.asarray(m, np.int64), np.asarray(c, np.int64)
    c4 = (int(k) // 16 + 3) // 4 * 4
    return ((m // 128) * (c4 // 4) + c // 4) * 512 + (m % 32) * 16 + ((m % 128) // 32) * 4 + (c % 4)


def _grid(rows, k):
    return np.meshgrid(np.arange(rows), np.arange(k // 16), indexing="ij")


def swizzle_scales(sf_rowmajor, k):
    """Row-major scales [rows, k/16] -> flat uint8 of scale_bytes(rows, k, 'swizzled'), padding 0."""
    sf = np.asarray(sf_rowmajor)
    if sf.dtype != np.uint8:
        raise ValueError(f"sf_rowmajor: expected uint8, got {sf.dtype}")
    if int(k) % 16 or sf.ndim != 2 or sf.shape[1] != int(k) // 16:
        raise ValueError(f"sf_rowmajor: expected [rows, {int(k) // 16}] for k = {k}, got {sf.shape}")
    rows = sf.shape[0]
    out = np.zeros(scale_bytes(rows, k, "swizzled"), np.uint8)
    m, c = _grid(rows, int(k))
    out[swizzle_offset(m, c, k)] = sf
    return out


def unswizzle_scales(flat, rows, k):
    """Flat swizzled scales -> row-major [rows, k/16]."""
    flat = np.asarray(flat)
    if flat.dtype != np.uint8:
        raise ValueError(f"flat: expected uint8, got {flat.dtype}")
    need = scale_bytes(rows, k, "swizzled")
    if flat.size != need:
        raise ValueError(f"flat: expected {need} bytes for rows = {rows}, k = {k}, got {flat.size}")
    m, c = _grid(int(rows), int(k))
    return flat.reshape(-1)[swizzle_offset(m, c, k)]


def _global_scale(gs, name="gs"):
    g = np.asarray(gs)
    if g.size != 1 or not (np.issubdtype(g.dtype, np.floating) or np.issubdtype(g.dtype, np.integer)):
        raise ValueError(f"{name}: expected one float32 value, got {g.dtype} of shape {g.shape}")
    g = np.float32(g.reshape(-1)[0])
    if g < 0:
        raise ValueError(f"{name}: must not be negative, got {g}")
    return g


def _quantize_blocks(b, gs):
    """b float32 [..., 16] blocks, gs float32 scalar -> (codes uint8 [..., 16], sf uint8 [...])."""
    # amax over the block, NaN skipped (fmaxf semantics), starting from 0
    amax = np.fmax.reduce(np.abs(b), axis=-1, initial=np.float32(0)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        t = (amax / np.float32(6)) / gs
        t = np.where(np.isnan(t), np.float32(np.inf), t)  # gs NaN: saturate like the kernel
        zero = (amax == 0) | (gs == 0)
        sf = np.where(zero, np.uint8(0), e4m3_encode(np.where(zero, np.float32(0), t))).astype(np.uint8)
        d = e4m3_decode(sf)
        denom = np.where(d == 0, np.float32(0), d * gs).astype(np.float32)
        quot = (b / denom[..., None]).astype(np.float32)
    quot = np.where(np.isnan(quot), np.float32(np.inf), quot)  # canonical (+) NaN -> code 7
    q = np.where(denom[..., None] == 0, np.uint8(0), e2m1_encode(quot)).astype(np.uint8)
    return q, sf


def quantize_nvfp4(x, gs, scale_layout="row_major"):
    """x float32 [rows, cols] (cols % 16 == 0) -> (q uint8 [rows, cols/2], sf uint8 [rows, cols/16]
    row-major, or flat swizzled). See the module docstring for the exact arithmetic."""
    _check_layout(scale_layout)
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"x: expected float32, got {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if x.ndim != 2 or x.shape[1] % 16:
        raise ValueError(f"x: expected [rows, cols] with cols a multiple of 16, got {x.shape}")
    gs = _global_scale(gs)
    rows, cols = x.shape
    q, sf = _quantize_blocks(x.reshape(rows, cols // 16, 16), gs)
    q = pack_codes(q.reshape(rows, cols))
    return q, (swizzle_scales(sf, cols) if scale_layout == "swizzled" else sf)


# byte -> its two e2m1 values (low nibble first) as float32, one uint64 per byte for a fast gather
_E2M1_PAIR = np.ascontiguousarray(
    np.stack([_E2M1[np.arange(256) & 15], _E2M1[np.arange(256) >> 4]], -1)).view(np.uint64).reshape(256)


def dequantize_nvfp4(q, sf, gs, cols, scale_layout="row_major"):
    """codes [rows, cols/2] + scales -> float64 [rows, cols] = e2m1 * |e4m3| * gs (exact)."""
    _check_layout(scale_layout)
    q = np.asarray(q)
    cols = int(cols)
    if q.dtype != np.uint8:
        raise ValueError(f"q: expected uint8, got {q.dtype}")
    if cols % 16 or q.ndim != 2 or q.shape[1] * 2 != cols:
        raise ValueError(f"q: expected [rows, {cols // 2}] with cols = {cols} a multiple of 16, "
                         f"got {q.shape}")
    rows = q.shape[0]
    sf = np.asarray(sf)
    if sf.dtype != np.uint8:
        raise ValueError(f"sf: expected uint8, got {sf.dtype}")
    if scale_layout == "swizzled":
        sf = unswizzle_scales(sf.reshape(-1), rows, cols)
    elif sf.shape != (rows, cols // 16):
        raise ValueError(f"sf: expected [{rows}, {cols // 16}] (row_major), got {sf.shape}")
    g = np.float64(_global_scale(gs))
    s = _E4M3_ABS64[sf] * g                                 # exact: 4 x 24 significant bits
    v = _E2M1_PAIR[q].view(np.float32).reshape(rows, cols // 16, 16)
    out = np.empty((rows, cols // 16, 16), np.float64)
    np.multiply(v, s[..., None], out=out)                   # exact: + 3 bits
    return out.reshape(rows, cols)


# ---- the layer -----------------------------------------------------------------------------------
def _float_array(a, name, dtype=np.float32):
    a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)) or a.dtype == bool:
        raise ValueError(f"{name}: expected a float array, got {a.dtype}")
    return a.astype(dtype, copy=False)


def _uint8_array(a, name, shape):
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8, got {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    return a


def _scale_array(a, name, e_local, rows, k, layout):
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8, got {a.dtype}")
    if layout == "row_major":
        return _uint8_array(a, name, (e_local, rows, k // 16))
    n = scale_bytes(rows, k, "swizzled")
    return _uint8_array(a, name + " (swizzled)", (e_local, n))


def _input_scales(s, name, e_local, num_experts):
    if s is None:
        raise ValueError(f"{name}: required when act_quant == 'nvfp4'")
    s = _float_array(s, name).reshape(-1)
    if s.size not in (1, e_local, num_experts):
        raise ValueError(f"{name}: expected 1, E_local ({e_local}) or num_experts ({num_experts}) "
                         f"values, got {s.size}")
    if np.any(s < 0):
        raise ValueError(f"{name}: must not be negative")
    return s


def _pick_scale(s, el, e_local, offset):
    # the kernels' input_scale_index: 1 value -> it, E_local values -> local id, else global id
    if s.size == 1:
        return s[0]
    return s[el] if s.size == e_local else s[el + offset]


def _silu_mul(g, up):
    with np.errstate(over="ignore"):
        return g / (1.0 + np.exp(-g)) * up


def moe_forward(x, topk_ids, topk_weights, w13, w13_scale, w13_global_scale, w2, w2_scale,
                w2_global_scale, fc1_input_scale, fc2_input_scale, *, num_experts=None,
                local_expert_offset=0, act_quant="nvfp4", gate_up_order="up_gate",
                scale_layout="row_major", return_intermediates=False):
    """SPEC §1 (see the module docstring). Returns out float32 [T, H] holding bf16 values, and
    with return_intermediates a dict of per-slot 'h', 'a', 'y', the 'local' mask and 'acc'."""
    if act_quant not in ("nvfp4", "none"):
        raise ValueError(f"act_quant: expected 'nvfp4' or 'none', got {act_quant!r}")
    if gate_up_order not in ("up_gate", "gate_up"):
        raise ValueError(f"gate_up_order: expected 'up_gate' or 'gate_up', got {gate_up_order!r}")
    _check_layout(scale_layout)

    x = _float_array(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x: expected [T, H], got shape {x.shape}")
    T, H = x.shape
    if H == 0 or H % 16:
        raise ValueError(f"x: H = {H} must be a positive multiple of 16")
    ids = np.asarray(topk_ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"topk_ids: expected an integer array (int32/int64), got {ids.dtype}")
    if ids.ndim != 2 or ids.shape[0] != T:
        raise ValueError(f"topk_ids: expected [T={T}, top_k], got shape {ids.shape}")
    ids = ids.astype(np.int64)
    tw = _float_array(topk_weights, "topk_weights")
    if tw.shape != ids.shape:
        raise ValueError(f"topk_weights: expected shape {ids.shape} (as topk_ids), got {tw.shape}")
    k = ids.shape[1]

    w13 = np.asarray(w13)
    if w13.dtype != np.uint8 or w13.ndim != 3 or w13.shape[2] * 2 != H or w13.shape[1] % 32:
        raise ValueError(f"w13: expected uint8 [E_local, 2I, {H // 2}] with I a multiple of 16, "
                         f"got {w13.dtype} {w13.shape}")
    E_local, I2 = w13.shape[0], w13.shape[1]
    I = I2 // 2
    if E_local == 0 or I == 0:
        raise ValueError(f"w13: E_local and I must be positive, got shape {w13.shape}")
    w13_scale = _scale_array(w13_scale, "w13_scale", E_local, I2, H, scale_layout)
    w2 = _uint8_array(w2, "w2", (E_local, H, I // 2))
    w2_scale = _scale_array(w2_scale, "w2_scale", E_local, H, I, scale_layout)
    g13 = _float_array(w13_global_scale, "w13_global_scale")
    g2 = _float_array(w2_global_scale, "w2_global_scale")
    for name, g in (("w13_global_scale", g13), ("w2_global_scale", g2)):
        if g.shape != (E_local,):
            raise ValueError(f"{name}: expected shape ({E_local},), got {g.shape}")
        if np.any(g < 0):
            raise ValueError(f"{name}: must not be negative")

    offset = int(local_expert_offset)
    E = E_local if num_experts is None else int(num_experts)
    if offset < 0 or offset + E_local > E:
        raise ValueError(f"local_expert_offset: [{offset}, {offset + E_local}) must lie inside "
                         f"[0, num_experts = {E})")
    fp4 = act_quant == "nvfp4"
    f1 = _input_scales(fc1_input_scale, "fc1_input_scale", E_local, E) if fp4 else None
    f2 = _input_scales(fc2_input_scale, "fc2_input_scale", E_local, E) if fp4 else None

    xb = bf16_round(x)
    local = (ids >= offset) & (ids < offset + E_local)
    el_flat = np.where(local, ids - offset, E_local).reshape(-1)
    order = np.argsort(el_flat, kind="stable")
    bounds = np.searchsorted(el_flat[order], np.arange(E_local + 1))
    slots = [order[bounds[e]:bounds[e + 1]] for e in range(E_local)]  # flat (t * k + j) per expert
    # y of the local slots only, row i for flat slot order[i] (all of one expert contiguous)
    n_local = int(bounds[E_local])
    y_loc = np.zeros((n_local, H), np.float32)
    row_of_slot = np.full(T * k, -1, np.int64)
    row_of_slot[order[:n_local]] = np.arange(n_local)
    inter = ({"h": np.zeros((T * k, I2), np.float32), "a": np.zeros((T * k, I), np.float32)}
             if return_intermediates else None)

    # Experts grouped by their fc1 scale: x is quantized once per distinct scale, for the union
    # of the tokens routed to those experts (one group when the scale is a scalar).
    active = [e for e in range(E_local) if slots[e].size]
    if fp4:
        groups = {}
        for e in active:
            groups.setdefault(np.float32(_pick_scale(f1, e, E_local, offset)).tobytes(), []).append(e)
        groups = list(groups.values())
    else:
        groups = [active]
    for group in groups:
        if fp4:
            gs1 = np.float32(_pick_scale(f1, group[0], E_local, offset))
            toks = np.unique(np.concatenate([slots[e] // k for e in group]))
            xq, xs = quantize_nvfp4(xb[toks], gs1)
            xd_rows = dequantize_nvfp4(xq, xs, gs1, H)
            row_of = np.zeros(T, np.int64)
            row_of[toks] = np.arange(toks.size)
        for el in group:
            s = slots[el]
            t_idx = s // k
            W13 = dequantize_nvfp4(w13[el], w13_scale[el], g13[el], H, scale_layout)
            xd = xd_rows[row_of[t_idx]] if fp4 else xb[t_idx].astype(np.float64)
            h = xd @ W13.T
            del W13
            up, g = (h[:, :I], h[:, I:]) if gate_up_order == "up_gate" else (h[:, I:], h[:, :I])
            a = _silu_mul(g, up).astype(np.float32)
            if fp4:
                gs2 = np.float32(_pick_scale(f2, el, E_local, offset))
                aq, asf = quantize_nvfp4(a, gs2)
                ad = dequantize_nvfp4(aq, asf, gs2, I)
            else:
                ad = bf16_round(a).astype(np.float64)
            W2 = dequantize_nvfp4(w2[el], w2_scale[el], g2[el], I, scale_layout)
            y_loc[bounds[el]:bounds[el + 1]] = (ad @ W2.T).astype(np.float32)
            if inter is not None:
                inter["h"][s] = h.astype(np.float32)
                inter["a"][s] = a

    acc = np.zeros((T, H), np.float32)
    for j in range(k):  # float32, in increasing j, non-local slots skipped
        rows = np.nonzero(local[:, j])[0]
        if rows.size:
            acc[rows] = acc[rows] + tw[rows, j, None] * y_loc[row_of_slot[rows * k + j]]
    out = bf16_round(acc)
    if return_intermediates:
        y_all = np.zeros((T * k, H), np.float32)
        y_all[order[:n_local]] = y_loc
        y_all = y_all.reshape(T, k, H)
        inter = {"h": inter["h"].reshape(T, k, I2), "a": inter["a"].reshape(T, k, I), "y": y_all,
                 "local": local, "acc": acc}
        return out, inter
    return out
