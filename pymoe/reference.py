"""NumPy reference of SPEC §1–2 (NumPy only; importable without the compiled extension).

Bit-exact encoders and the NVFP4 quantizer that the GPU kernels match bit for bit, the 128x4
scale swizzle, and the full MoE forward (local expert ranges, invalid ids, both activation modes,
both gate/up orders, both scale layouts).

Numerics, binding for the kernels:
- e2m1: round-to-nearest-even on {0, .5, 1, 1.5, 2, 3, 4, 6}, saturating at 6 (inf and NaN too);
  the sign bit is the IEEE sign of the input, so negative values that round to 0 encode as 8 (-0).
- e4m3 (fn): RNE, satfinite at 448, subnormals m * 2^-9. Block scales are unsigned (their sign bit
  is ignored when decoding weight scales, as the SM100/SM120 ue4m3 scale type does).
- quantize a block b (16 values along K) with global scale gs, all in float32, RNE at each step:
      amax = max|b|;  if amax == 0 or gs == 0: sf = 0, codes 0
      sf = e4m3(amax / 6 / gs);  denom = dec(sf) * gs;  q_i = e2m1(b_i / denom)  (codes 0 if sf == 0)
- moe_forward: dequantized operands exact in float64; h = xd @ W13ᵀ in float64; a = silu(g) * up in
  float64, then float32; act "nvfp4": a is quantized with fc2_input_scale, act "none": a is rounded
  to bf16; y = ad @ W2ᵀ in float64, then float32; out = bf16(Σ_j float32(w_j) * y_j), summed in
  float32 in increasing j; non-local slots (other ranks' ids, -1, >= E) are skipped.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "e2m1_decode", "e2m1_encode", "e4m3_decode", "e4m3_encode", "bf16_round", "float32_to_bf16_bits",
    "bf16_bits_to_float32", "quantize_nvfp4", "dequantize_nvfp4", "scale_bytes", "swizzle_offset",
    "swizzle_scales", "unswizzle_scales", "pack_codes", "unpack_codes", "moe_forward",
]

_E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)


# ---- element encoders -----------------------------------------------------------------------------
def e2m1_decode(codes):
    return _E2M1[np.asarray(codes, np.uint8) & 15]


def e2m1_encode(v):
    v = np.asarray(v, np.float32)
    a = np.abs(v)
    m = np.select([a <= 0.25, a < 0.75, a <= 1.25, a < 1.75, a <= 2.5, a < 3.5, a <= 5.0],
                  [0, 1, 2, 3, 4, 5, 6], 7)
    m = np.where(np.isnan(v), 7, m)
    return (m | np.where(np.signbit(v), 8, 0)).astype(np.uint8)


def e4m3_decode(b):
    b = np.asarray(b, np.int64)
    e, m = (b >> 3) & 15, b & 7
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8) * 2.0 ** (e - 7))
    v = np.where((b & 0x7F) == 0x7F, np.nan, v)
    return np.where(b & 0x80, -v, v).astype(np.float32)


_E4M3_POS = e4m3_decode(np.arange(0x7F)).astype(np.float64)  # codes 0..0x7E, increasing


def e4m3_encode(v):
    """float32 -> e4m3fn byte: RNE, satfinite (|v| >= 448 and inf -> 448), sign kept."""
    v = np.asarray(v, np.float32)
    a = np.abs(v).astype(np.float64)
    idx = np.clip(np.searchsorted(_E4M3_POS, a), 1, len(_E4M3_POS) - 1)
    lo, hi = _E4M3_POS[idx - 1], _E4M3_POS[idx]
    up = (a - lo > hi - a) | ((a - lo == hi - a) & (idx % 2 == 0))  # tie -> even code
    code = np.where(up, idx, idx - 1)
    code = np.where(a >= 448, 0x7E, np.where(a <= 0, 0, code))
    code = np.where(np.isnan(v), 0x7F, code)
    return (code | np.where(np.signbit(v), 0x80, 0)).astype(np.uint8)


def float32_to_bf16_bits(x):
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, np.float32))
    return np.where(nan, np.uint16(0x7FC0), r).astype(np.uint16)


def bf16_bits_to_float32(b):
    return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)


def bf16_round(x):
    return bf16_bits_to_float32(float32_to_bf16_bits(x))


# ---- NVFP4 ---------------------------------------------------------------------------------------
def pack_codes(q):
    q = np.asarray(q, np.uint8)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def unpack_codes(p):
    p = np.asarray(p, np.uint8)
    return np.stack([p & 15, p >> 4], -1).reshape(*p.shape[:-1], p.shape[-1] * 2)


def scale_bytes(rows, k, layout="row_major"):
    if layout == "row_major":
        return rows * (k // 16)
    if layout == "swizzled":
        return (rows + 127) // 128 * 128 * ((k // 16 + 3) // 4 * 4)
    raise ValueError(f"layout: expected 'row_major' or 'swizzled', got {layout!r}")


def swizzle_offset(m, c, k):
    m, c = np.asarray(m, np.int64), np.asarray(c, np.int64)
    c4 = (k // 16 + 3) // 4 * 4
    return ((m // 128) * (c4 // 4) + c // 4) * 512 + (m % 32) * 16 + ((m % 128) // 32) * 4 + (c % 4)


def swizzle_scales(sf, k):
    sf = np.asarray(sf, np.uint8)
    rows = sf.shape[0]
    out = np.zeros(scale_bytes(rows, k, "swizzled"), np.uint8)
    m, c = np.meshgrid(np.arange(rows), np.arange(k // 16), indexing="ij")
    out[swizzle_offset(m, c, k)] = sf
    return out


def unswizzle_scales(flat, rows, k):
    m, c = np.meshgrid(np.arange(rows), np.arange(k // 16), indexing="ij")
    return np.asarray(flat, np.uint8).reshape(-1)[swizzle_offset(m, c, k)]


def quantize_nvfp4(x, gs, scale_layout="row_major"):
    """x float32 [rows, cols] (cols % 16 == 0) -> (codes uint8 [rows, cols/2], scales uint8:
    [rows, cols/16] row-major, or the flat swizzled layout)."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] % 16:
        raise ValueError(f"x: expected [rows, cols] with cols a multiple of 16, got {x.shape}")
    rows, cols = x.shape
    gs = np.float32(gs)
    b = x.reshape(rows, cols // 16, 16)
    amax = np.max(np.abs(b), axis=-1).astype(np.float32) if cols else np.zeros((rows, 0), np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = (amax / np.float32(6)) / gs
        t = np.where(np.isnan(t), np.float32(np.inf), t)  # NaN blocks saturate, as on the GPU
        zero = (amax == 0) | (gs == 0)
        sf = np.where(zero, 0, e4m3_encode(np.where(zero, 0, t))).astype(np.uint8)
        denom = (np.abs(e4m3_decode(sf)) * gs).astype(np.float32)
        q = e2m1_encode((b / denom[..., None]).astype(np.float32))
    q = np.where(denom[..., None] == 0, 0, q).astype(np.uint8)
    codes = pack_codes(q.reshape(rows, cols))
    return codes, (swizzle_scales(sf, cols) if scale_layout == "swizzled" else sf)


def dequantize_nvfp4(q, sf, gs, cols, scale_layout="row_major"):
    """codes [rows, cols/2] + scales -> float64 [rows, cols] = e2m1 * |e4m3| * gs."""
    q = np.asarray(q, np.uint8)
    rows = q.shape[0]
    sf = unswizzle_scales(sf, rows, cols) if scale_layout == "swizzled" else np.asarray(sf, np.uint8)
    sfv = np.abs(e4m3_decode(sf.reshape(rows, cols // 16))).astype(np.float64)
    return e2m1_decode(unpack_codes(q)).astype(np.float64) * np.repeat(sfv, 16, axis=1) * np.float64(gs)


# ---- the layer ---------------------------------------------------------------------------------------
def _scale_for(scales, el, e_local, offset, name):
    s = np.atleast_1d(np.asarray(scales, np.float32)).reshape(-1)
    if s.size == 1:
        return s[0]
    if s.size == e_local:
        return s[el]
    if s.size > el + offset:
        return s[el + offset]
    raise ValueError(f"{name}: expected 1, E_local or E values, got {s.size}")


def moe_forward(x, topk_ids, topk_weights, w13, w13_scale, w13_global_scale, w2, w2_scale,
                w2_global_scale, fc1_input_scale, fc2_input_scale, *, num_experts=None,
                local_expert_offset=0, act_quant="nvfp4", gate_up_order="up_gate",
                scale_layout="row_major", return_intermediates=False):
    """SPEC §1. Returns out float32 [T, H] holding bf16 values (and a dict of per-slot h, a, y
    float32 arrays plus the local-slot mask when return_intermediates)."""
    x = np.asarray(x, np.float32)
    ids = np.asarray(topk_ids).astype(np.int64)
    tw = np.asarray(topk_weights, np.float32)
    if x.ndim != 2:
        raise ValueError(f"x: expected [T, H], got {x.shape}")
    T, H = x.shape
    if ids.shape != tw.shape or ids.ndim != 2 or ids.shape[0] != T:
        raise ValueError(f"topk_ids / topk_weights: expected [T, top_k], got {ids.shape} / {tw.shape}")
    E_local, I2, h2 = np.asarray(w13).shape
    if h2 * 2 != H:
        raise ValueError(f"w13: expected [E_local, 2I, {H // 2}], got {np.asarray(w13).shape}")
    I = I2 // 2
    if act_quant not in ("nvfp4", "none"):
        raise ValueError(f"act_quant: expected 'nvfp4' or 'none', got {act_quant!r}")
    if gate_up_order not in ("up_gate", "gate_up"):
        raise ValueError(f"gate_up_order: expected 'up_gate' or 'gate_up', got {gate_up_order!r}")
    offset = int(local_expert_offset)
    k = ids.shape[1]
    local = (ids >= offset) & (ids < offset + E_local)
    y_all = np.zeros((T, k, H), np.float32)
    inter = {"h": np.zeros((T, k, I2), np.float32), "a": np.zeros((T, k, I), np.float32)} if return_intermediates else None
    for el in range(E_local):
        t_idx, j_idx = np.nonzero(ids == el + offset)
        if t_idx.size == 0:
            continue
        W13 = dequantize_nvfp4(w13[el], w13_scale[el], w13_global_scale[el], H, scale_layout)
        W2 = dequantize_nvfp4(w2[el], w2_scale[el], w2_global_scale[el], I, scale_layout)
        xs = x[t_idx]
        if act_quant == "nvfp4":
            g1 = _scale_for(fc1_input_scale, el, E_local, offset, "fc1_input_scale")
            q, sf = quantize_nvfp4(xs, g1)
            xd = dequantize_nvfp4(q, sf, g1, H)
        else:
            xd = xs.astype(np.float64)
        h = xd @ W13.T
        up, g = (h[:, :I], h[:, I:]) if gate_up_order == "up_gate" else (h[:, I:], h[:, :I])
        a = (g / (1.0 + np.exp(-g)) * up).astype(np.float32)
        if act_quant == "nvfp4":
            g2 = _scale_for(fc2_input_scale, el, E_local, offset, "fc2_input_scale")
            q, sf = quantize_nvfp4(a, g2)
            ad = dequantize_nvfp4(q, sf, g2, I)
        else:
            ad = bf16_round(a).astype(np.float64)
        y_all[t_idx, j_idx] = (ad @ W2.T).astype(np.float32)
        if inter is not None:
            inter["h"][t_idx, j_idx] = h.astype(np.float32)
            inter["a"][t_idx, j_idx] = a
    acc = np.zeros((T, H), np.float32)
    for j in range(k):  # float32, increasing j, non-local slots skipped
        acc = np.where(local[:, j:j + 1], (acc + tw[:, j:j + 1] * y_all[:, j]).astype(np.float32), acc)
    out = bf16_round(acc)
    if return_intermediates:
        inter.update(y=y_all, local=local)
        return out, inter
    return out
