"""A second, independently written NumPy model of SPEC §1–2 (the lead's, used by dev_smoke.py
to cross-check pymoe.reference and the kernels). Deliberately brute force: clarity over speed."""
import numpy as np

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float64)


def e4m3_value(b):
    b = np.asarray(b, np.int64)
    e, m = (b >> 3) & 15, b & 7
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8) * 2.0 ** (e - 7))
    return np.where(b & 0x80, -v, v)


_POS = e4m3_value(np.arange(0x7F))  # finite non-negative codes 0..0x7E, increasing


def e4m3_encode(t):
    """RNE, satfinite, t >= 0 (float32 input)."""
    t = np.asarray(t, np.float64)
    idx = np.searchsorted(_POS, t)  # _POS[idx-1] < t <= _POS[idx]
    idx = np.clip(idx, 1, len(_POS) - 1)
    lo, hi = _POS[idx - 1], _POS[idx]
    pick_hi = (t - lo > hi - t) | ((t - lo == hi - t) & (idx % 2 == 0))
    code = np.where(pick_hi, idx, idx - 1)
    code = np.where(t >= 448, 0x7E, code)
    return np.where(t <= 0, 0, code).astype(np.uint8)


def e2m1_encode(v):
    v = np.asarray(v, np.float32)
    a = np.abs(v)
    m = np.select([a <= 0.25, a < 0.75, a <= 1.25, a < 1.75, a <= 2.5, a < 3.5, a <= 5.0],
                  [0, 1, 2, 3, 4, 5, 6], 7)
    return (m | np.where(np.signbit(v), 8, 0)).astype(np.uint8)


def quantize(x, gs):
    """x float32 [rows, cols] -> codes uint8 [rows, cols] (unpacked), sf uint8 [rows, cols/16]."""
    x = np.asarray(x, np.float32)
    rows, cols = x.shape
    b = x.reshape(rows, cols // 16, 16)
    amax = np.abs(b).max(-1).astype(np.float32)
    gs = np.float32(gs)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (amax / np.float32(6)) / gs
        sf = e4m3_encode(np.where((amax == 0) | (gs == 0), 0, t))
        denom = (e4m3_value(sf).astype(np.float32) * gs).astype(np.float32)
        q = e2m1_encode(np.where(denom[..., None] == 0, 0, b / denom[..., None]))
    q = np.where(denom[..., None] == 0, 0, q).astype(np.uint8)
    return q.reshape(rows, cols), sf


def pack(q):
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)


def swizzle(sf, rows, k):
    c = k // 16
    c4 = (c + 3) // 4 * 4
    out = np.zeros(((rows + 127) // 128 * 128) * c4, np.uint8)
    m, cc = np.meshgrid(np.arange(rows), np.arange(c), indexing="ij")
    off = ((m // 128) * (c4 // 4) + cc // 4) * 512 + (m % 32) * 16 + ((m % 128) // 32) * 4 + (cc % 4)
    out[off] = sf
    return out


def unswizzle(flat, rows, k):
    c = k // 16
    c4 = (c + 3) // 4 * 4
    m, cc = np.meshgrid(np.arange(rows), np.arange(c), indexing="ij")
    return flat[((m // 128) * (c4 // 4) + cc // 4) * 512 + (m % 32) * 16 + ((m % 128) // 32) * 4 + (cc % 4)]


def dequant(codes_packed, sf, gs):
    q = np.stack([codes_packed & 15, codes_packed >> 4], -1).reshape(codes_packed.shape[0], -1)
    sfv = np.abs(e4m3_value(sf))  # scales are unsigned
    return E2M1[q] * np.repeat(sfv, 16, axis=1) * np.float64(gs)


def bf16(x):
    x = np.asarray(x, np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def moe(x, ids, tw, w13, s13, g13, w2, s2, g2, fc1, fc2, E, offset, act, order, layout):
    T, H = x.shape
    EL, I2 = w13.shape[0], w13.shape[1]
    I = I2 // 2
    fc1, fc2 = np.atleast_1d(fc1), np.atleast_1d(fc2)
    idx = lambda a, el: a[0] if a.size == 1 else (a[el] if a.size == EL else a[el + offset])
    out = np.zeros((T, H), np.float32)
    cache = {}

    def weights(el):
        if el not in cache:
            sa = unswizzle(s13[el], I2, H) if layout == "swizzled" else s13[el]
            sb = unswizzle(s2[el], H, I) if layout == "swizzled" else s2[el]
            cache[el] = (dequant(w13[el], sa, g13[el]), dequant(w2[el], sb, g2[el]))
        return cache[el]

    for t in range(T):
        acc = np.float32(0) * np.zeros(H, np.float32)
        for j in range(ids.shape[1]):
            el = int(ids[t, j]) - offset
            if not (0 <= el < EL):
                continue
            W13, W2 = weights(el)
            if act == "nvfp4":
                q, sf = quantize(x[t:t + 1], idx(fc1, el))
                xd = dequant(pack(q), sf, idx(fc1, el))[0]
            else:
                xd = x[t].astype(np.float64)
            h = W13 @ xd
            up, g = (h[:I], h[I:]) if order == "up_gate" else (h[I:], h[:I])
            a = (g / (1 + np.exp(-g)) * up).astype(np.float32)
            if act == "nvfp4":
                q, sf = quantize(a[None], idx(fc2, el))
                ad = dequant(pack(q), sf, idx(fc2, el))[0]
            else:
                ad = bf16(a).astype(np.float64)
            y = (W2 @ ad).astype(np.float32)
            acc = (acc + np.float32(tw[t, j]) * y).astype(np.float32)
        out[t] = acc
    return bf16(out)
