"""moe12x demo: what the fused NVFP4 MoE layer computes, and a check of the GPU kernel.

    python -m pymoe.demo            # GPU if there is one (needs torch or CuPy), else CPU only
    python -m pymoe.demo --cpu      # NumPy reference only, on a tiny shape

On a GPU the demo builds random NVFP4 weights for a real model shape (qwen3-30b-a3b with the
number of experts reduced to 32), runs the layer on 16 tokens, compares the result with the
NumPy reference (``pymoe.reference``) and prints the relative L2 error, PASS/FAIL and the time
per call. Without a GPU it runs the reference on a tiny shape and prints what the layer does.

This module also holds the random-problem generator that the GPU tests reuse
(``tests/gpu_util.py``): NumPy only, no GPU framework needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time

import numpy as np

# --------------------------------------------------------------------------------------------
# Model shapes (E experts, top_k, hidden H, intermediate I) used by tests, demo and benchmark.
# --------------------------------------------------------------------------------------------
MODEL_SHAPES = {
    "qwen3-30b-a3b": dict(num_experts=128, top_k=8, hidden=2048, inter=768),
    "qwen3-235b-a22b": dict(num_experts=128, top_k=8, hidden=4096, inter=1536),
    "gpt-oss-120b": dict(num_experts=128, top_k=4, hidden=2880, inter=2880),
    "deepseek-v3": dict(num_experts=256, top_k=8, hidden=7168, inter=2048),
}

E2M1_MAX = 6.0
E4M3_MAX = 448.0
# RMS of the 16 e2m1 codes drawn uniformly: sqrt(mean of {0,.25,1,2.25,4,9,16,36}) = 2.926.
_E2M1_RMS = math.sqrt((0 + 0.25 + 1 + 2.25 + 4 + 9 + 16 + 36) / 8.0)

# bf16 quiet NaN, the bit pattern tests poison outputs with.
BF16_NAN_BITS = 0x7FC0


# --------------------------------------------------------------------------------------------
# bf16 helpers (kept local so that the generator does not depend on reference internals)
# --------------------------------------------------------------------------------------------
def f32_to_bf16_bits(x) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), round to nearest even. Finite inputs only."""
    b = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32)
    rounding = ((b >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF)
    return ((b + rounding) >> np.uint32(16)).astype(np.uint16)


def bf16_bits_to_f32(bits) -> np.ndarray:
    """bf16 bit patterns (uint16) -> float32 values (exact)."""
    b = np.ascontiguousarray(np.asarray(bits, dtype=np.uint16))
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


def bf16_round(x) -> np.ndarray:
    return bf16_bits_to_f32(f32_to_bf16_bits(x))


def _e4m3_decode(b: np.ndarray) -> np.ndarray:
    """e4m3fn bytes (sign bit clear, no NaN) -> float64 values; subnormals included."""
    b = b.astype(np.int64)
    e = (b >> 3) & 0xF
    m = b & 7
    return np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7))


# --------------------------------------------------------------------------------------------
# Random problems
# --------------------------------------------------------------------------------------------
def random_activations(rng: np.random.Generator, tokens: int, hidden: int,
                       row_scale=(0.25, 4.0)) -> np.ndarray:
    """bf16 bits [T, H]: normal values, each row scaled log-uniformly in row_scale, no zeros."""
    x = rng.standard_normal((tokens, hidden)).astype(np.float32)
    lo, hi = np.log(row_scale[0]), np.log(row_scale[1])
    x *= np.exp(rng.uniform(lo, hi, size=(tokens, 1))).astype(np.float32)
    tiny = np.float32(1e-3)
    x = np.where(np.abs(x) < tiny, np.copysign(tiny, x), x)  # fresh random data, never zero
    return f32_to_bf16_bits(x)


def random_routing(rng: np.random.Generator, tokens: int, num_experts: int, top_k: int,
                   mode: str = "uniform", hot_expert: int | None = None):
    """topk_ids int32 [T, k] (distinct experts per token) and topk_weights fp32 [T, k] (> 0).

    mode "uniform": top_k distinct experts drawn uniformly per token.
    mode "skewed":  every token routes to `hot_expert` (default E // 3) in a random slot; the
                    other slots are distinct random experts. All T tokens hit one expert.
    """
    if top_k > num_experts:
        raise ValueError("top_k > num_experts")
    if tokens == 0:
        return np.zeros((0, top_k), np.int32), np.zeros((0, top_k), np.float32)
    if mode == "uniform":
        r = rng.random((tokens, num_experts))
        ids = np.argpartition(r, top_k - 1, axis=1)[:, :top_k] if top_k < num_experts else \
            np.argsort(r, axis=1)
        ids = ids[:, :top_k]
        # argpartition leaves an arbitrary order; shuffle each row so slot order is random too
        perm = np.argsort(rng.random((tokens, top_k)), axis=1)
        ids = np.take_along_axis(ids, perm, axis=1)
    elif mode == "skewed":
        hot = num_experts // 3 if hot_expert is None else hot_expert
        r = rng.random((tokens, num_experts))
        r[:, hot] = -1.0  # always picked (smallest)
        ids = np.argsort(r, axis=1)[:, :top_k]
        perm = np.argsort(rng.random((tokens, top_k)), axis=1)
        ids = np.take_along_axis(ids, perm, axis=1)
    else:
        raise ValueError(f"unknown routing mode {mode!r}")
    w = rng.random((tokens, top_k)) + 0.05
    w = w / w.sum(axis=1, keepdims=True)
    return ids.astype(np.int32), w.astype(np.float32)


def _random_scale_bytes(rng, shape, subnormal_heavy: bool = False) -> np.ndarray:
    """Sane random e4m3 block-scale bytes, never NaN (0x7F) and never the sign bit.
    Default: mostly 0.25..2.0 (0x28..0x40), ~3% subnormal (0x01..0x07), ~0.5% zero.
    subnormal_heavy: 0x01..0x0F, i.e. ~half subnormal (2^-9 .. 7*2^-9), half the smallest
    normals: an expert whose weights live mostly on subnormal scales (a wrong subnormal decode,
    a known bug class, then shows as a large error)."""
    if subnormal_heavy:
        return rng.integers(0x01, 0x10, size=shape, dtype=np.uint8)
    sf = rng.integers(0x28, 0x41, size=shape, dtype=np.uint8)
    u = rng.random(shape)
    sub = rng.integers(0x01, 0x08, size=shape, dtype=np.uint8)
    sf = np.where(u < 0.03, sub, sf)
    sf = np.where(u > 0.995, np.uint8(0), sf)
    return sf.astype(np.uint8)


def reference_quantizer(w_f32: np.ndarray, gs: float):
    """Quantize one bf16-valued matrix [rows, K] with pymoe.reference (row-major scales)."""
    from pymoe import reference
    q, sf = reference.quantize_nvfp4(w_f32, np.float32(gs), "row_major")
    rows, k = w_f32.shape
    return (np.asarray(q, np.uint8).reshape(rows, k // 2),
            np.asarray(sf, np.uint8).reshape(rows, k // 16))


def random_nvfp4_weights(rng, num: int, rows: int, k: int, *, mode: str = "mixed",
                         quantize=None, quantize_budget: int = 1 << 23):
    """NVFP4 weights of `num` experts, each [rows, k]: (q [num, rows, k/2], sf row-major
    [num, rows, k/16], global scale fp32 [num]).

    mode "quantized": random bf16 weights N(0, 1/k) quantized (by `quantize`, default the NumPy
    reference) with the ModelOpt global scale gs = amax / (6 * 448) (for experts larger than
    quantize_budget / 4 elements the quantized rows repeat);
    mode "random":    random code bytes and random (sane) scale bytes, gs chosen so that the
    values have about the same RMS (1/sqrt(k));
    mode "mixed":     experts 0, 3, 6, ... quantized (while the element budget lasts); experts
    1, 4, 7, ... random bytes with mostly subnormal e4m3 scales; the rest random bytes.
    `quantize_budget` caps the elements quantized (the NumPy quantizer is slow).
    """
    quantize = quantize or reference_quantizer
    q = np.empty((num, rows, k // 2), np.uint8)
    sf = np.empty((num, rows, k // 16), np.uint8)
    gs = np.empty((num,), np.float32)
    used = 0
    # rows quantized per expert: at most quantize_budget / 4 elements; larger experts repeat
    # the quantized rows (keeps the NumPy quantizer's time bounded for the big shapes)
    rows_q = int(max(1, min(rows, (quantize_budget // 4) // k)))
    for e in range(num):
        want_q = mode == "quantized" or (mode == "mixed" and e % 3 == 0)
        if want_q and (mode == "quantized" or used + rows_q * k <= quantize_budget or e == 0):
            w = bf16_round(rng.standard_normal((rows_q, k)).astype(np.float32) / np.sqrt(k))
            g = np.float32(np.abs(w).max() / (E2M1_MAX * E4M3_MAX))
            qq, ss = quantize(w, g)
            reps = -(-rows // rows_q)
            q[e] = np.tile(qq, (reps, 1))[:rows]
            sf[e] = np.tile(ss, (reps, 1))[:rows]
            gs[e] = g
            used += rows_q * k
        else:
            q[e] = rng.integers(0, 256, size=(rows, k // 2), dtype=np.uint8)
            sf[e] = _random_scale_bytes(rng, (rows, k // 16),
                                        subnormal_heavy=(mode == "mixed" and e % 3 == 1))
            sf_rms = float(np.sqrt(np.mean(_e4m3_decode(sf[e]) ** 2))) or 1.0
            gs[e] = np.float32(1.0 / np.sqrt(k) / (_E2M1_RMS * sf_rms)
                               * np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    return q, sf, gs


@dataclasses.dataclass
class Problem:
    """One MoE problem in canonical NVFP4 (SPEC §1-2), all NumPy, row-major scales."""
    num_experts: int            # E of the whole model
    local_expert_offset: int    # first expert this problem's weights hold
    top_k: int
    hidden: int
    inter: int
    x_bits: np.ndarray          # uint16 bf16 bits [T, H]
    topk_ids: np.ndarray        # int32 [T, k]
    topk_weights: np.ndarray    # fp32 [T, k]
    w13: np.ndarray             # uint8 [E_local, 2I, H/2]
    w13_scale: np.ndarray       # uint8 [E_local, 2I, H/16] row-major
    w13_global_scale: np.ndarray  # fp32 [E_local]
    w2: np.ndarray              # uint8 [E_local, H, I/2]
    w2_scale: np.ndarray        # uint8 [E_local, H, I/16] row-major
    w2_global_scale: np.ndarray   # fp32 [E_local]
    fc1_input_scale: np.ndarray   # fp32 [1], [E_local] or [E]
    fc2_input_scale: np.ndarray
    gate_up_order: str = "up_gate"  # order of the two halves of w13's rows as stored
    name: str = ""

    @property
    def tokens(self) -> int:
        return int(self.x_bits.shape[0])

    @property
    def num_local_experts(self) -> int:
        return int(self.w13.shape[0])

    @property
    def x(self) -> np.ndarray:
        """x as float32 values (exactly the bf16 values)."""
        return bf16_bits_to_f32(self.x_bits)

    def describe(self) -> str:
        return (f"{self.name or 'problem'}: E={self.num_experts} (local {self.num_local_experts} "
                f"from {self.local_expert_offset}) top_k={self.top_k} H={self.hidden} "
                f"I={self.inter} T={self.tokens}")

    def replace(self, **kw) -> "Problem":
        return dataclasses.replace(self, **kw)

    def scales(self, layout: str = "row_major"):
        """(w13_scale, w2_scale) in `layout`: row-major [E, rows, K/16] or swizzled
        [E, scale_bytes(rows, K, "swizzled")] (SPEC §2 128x4 layout, per expert)."""
        if layout == "row_major":
            return self.w13_scale, self.w2_scale
        if layout != "swizzled":
            raise ValueError(layout)
        return swizzle_expert_scales(self.w13_scale), swizzle_expert_scales(self.w2_scale)

    def with_gate_up_swapped(self) -> "Problem":
        """The same layer with W13's halves stored the other way round (and the flag flipped)."""
        i = self.inter
        sw = lambda a: np.ascontiguousarray(np.concatenate([a[:, i:], a[:, :i]], axis=1))
        order = "gate_up" if self.gate_up_order == "up_gate" else "up_gate"
        return self.replace(w13=sw(self.w13), w13_scale=sw(self.w13_scale), gate_up_order=order)

    def shard(self, index: int, count: int, input_scales: str = "local") -> "Problem":
        """Expert-parallel shard `index` of `count`: experts [off, off + E/count) of this
        problem's local experts, all tokens and ids unchanged (other ranks' ids stay in).
        input_scales: "local" slices per-expert input scales to the shard's experts, "global"
        keeps the full [E] vectors (indexed by global expert id)."""
        n = self.num_local_experts
        if n % count:
            raise ValueError("experts not divisible by shard count")
        per = n // count
        lo, hi = index * per, (index + 1) * per
        fc1, fc2 = self.fc1_input_scale, self.fc2_input_scale
        if input_scales == "local":
            if fc1.size == n:
                fc1 = fc1[lo:hi].copy()
            if fc2.size == n:
                fc2 = fc2[lo:hi].copy()
        return self.replace(
            local_expert_offset=self.local_expert_offset + lo,
            w13=self.w13[lo:hi].copy(), w13_scale=self.w13_scale[lo:hi].copy(),
            w13_global_scale=self.w13_global_scale[lo:hi].copy(),
            w2=self.w2[lo:hi].copy(), w2_scale=self.w2_scale[lo:hi].copy(),
            w2_global_scale=self.w2_global_scale[lo:hi].copy(),
            fc1_input_scale=fc1, fc2_input_scale=fc2,
            name=f"{self.name}[shard {index}/{count}]")

    def reference(self, act_quant: str = "nvfp4", **kw) -> np.ndarray:
        """pymoe.reference.moe_forward on this problem: float32 [T, H] holding bf16 values."""
        from pymoe import reference
        return np.asarray(reference.moe_forward(
            self.x, self.topk_ids, self.topk_weights,
            self.w13, self.w13_scale, self.w13_global_scale,
            self.w2, self.w2_scale, self.w2_global_scale,
            self.fc1_input_scale, self.fc2_input_scale,
            num_experts=self.num_experts, local_expert_offset=self.local_expert_offset,
            act_quant=act_quant, gate_up_order=self.gate_up_order, scale_layout="row_major",
            **kw), dtype=np.float32)


def swizzle_expert_scales(sf_rowmajor: np.ndarray) -> np.ndarray:
    """[E, rows, K/16] row-major scale bytes -> [E, nbytes] in the 128x4 swizzled layout,
    padding zero. Uses pymoe.reference.swizzle_scales per expert."""
    from pymoe import reference
    k = 16 * sf_rowmajor.shape[-1]
    out = [np.asarray(reference.swizzle_scales(np.ascontiguousarray(s), k), np.uint8).reshape(-1)
           for s in sf_rowmajor]
    return np.ascontiguousarray(np.stack(out)) if out else np.zeros((0, 0), np.uint8)


_E2M1_SQ_BYTE = None


def _rows_rms(q: np.ndarray, sf: np.ndarray, gs: float, rows: np.ndarray) -> float:
    """RMS of the dequantized values of some rows of one expert's NVFP4 matrix (no dequant:
    a byte lookup of the two codes' squares, weighted by the squared block scale)."""
    global _E2M1_SQ_BYTE
    if _E2M1_SQ_BYTE is None:
        v = np.array([0, .5, 1, 1.5, 2, 3, 4, 6] * 2, np.float64) ** 2
        b = np.arange(256)
        _E2M1_SQ_BYTE = v[b & 15] + v[b >> 4]
    sub = q[rows]
    sq = _E2M1_SQ_BYTE[sub].reshape(len(rows), -1, 8).sum(-1)  # per 16-block
    sq = sq * _e4m3_decode(sf[rows]) ** 2
    return float(np.sqrt(sq.sum() / (len(rows) * sub.shape[1] * 2))) * float(gs)


def _estimate_act_amax(x_f32, ids, w13, w13_sf, w13_gs, inter, fc1_scale, max_pairs=16):
    """Per-expert estimate of amax(silu(gate) * up), to calibrate fc2_input_scale the way a
    calibration pass would (amax / (6 * 448)). One expert is measured exactly on a sample of its
    routed rows (FC1 in float64 on dequantized weights, x quantized like nvfp4 mode); the others
    are scaled from it by their W13 RMS squared, and all by the largest token norm; x2 margin."""
    from pymoe import reference
    n = w13.shape[0]
    hidden = x_f32.shape[1]
    rows = np.unique(np.linspace(0, 2 * inter - 1, 256).astype(np.int64))
    rms = np.array([_rows_rms(w13[e], w13_sf[e], w13_gs[e], rows) for e in range(n)])
    routed = (ids >= 0) & (ids < n)
    if not routed.any():
        return np.full(n, 4.0)
    t_idx, j_idx = np.nonzero(routed)
    e = int(ids[t_idx[0], j_idx[0]])
    sel = t_idx[ids[t_idx, j_idx] == e][:max_pairs]
    W = np.asarray(reference.dequantize_nvfp4(w13[e], w13_sf[e], np.float32(w13_gs[e]), hidden,
                                              "row_major"), np.float64).reshape(2 * inter, hidden)
    g1 = np.float32(fc1_scale[0])
    q, sf = reference.quantize_nvfp4(x_f32[sel], g1, "row_major")
    xq = np.asarray(reference.dequantize_nvfp4(q, sf, g1, hidden, "row_major"),
                    np.float64).reshape(len(sel), hidden)
    h = xq @ W.T
    a = h[:, inter:] / (1.0 + np.exp(-h[:, inter:])) * h[:, :inter]
    norms = np.linalg.norm(x_f32.astype(np.float64), axis=1)
    grow = (norms.max() / max(norms[sel].max(), 1e-30)) ** 2
    base = max(float(np.abs(a).max()), 1e-6)
    return 2.0 * base * grow * (rms / max(rms[e], 1e-30)) ** 2


def make_problem(*, num_experts: int, top_k: int, hidden: int, inter: int, tokens: int,
                 seed: int = 0, routing: str = "uniform", weight_mode: str = "mixed",
                 input_scales: str = "scalar", quantize=None, quantize_budget: int = 1 << 23,
                 name: str = "", hot_expert: int | None = None) -> Problem:
    """A fresh random problem with all E experts local (offset 0).

    input_scales: "scalar" -> fc1/fc2_input_scale of 1 element; "per_expert" -> E elements,
    each the scalar times a log-uniform factor in [0.7, 2] (so a few blocks saturate at 448).
    Input scales follow the ModelOpt convention: amax / (6 * 448).
    """
    rng = np.random.default_rng(seed)
    x_bits = random_activations(rng, tokens, hidden)
    ids, w = random_routing(rng, tokens, num_experts, top_k, routing, hot_expert)
    w13, w13_sf, w13_gs = random_nvfp4_weights(rng, num_experts, 2 * inter, hidden,
                                               mode=weight_mode, quantize=quantize,
                                               quantize_budget=quantize_budget)
    w2, w2_sf, w2_gs = random_nvfp4_weights(rng, num_experts, hidden, inter, mode=weight_mode,
                                            quantize=quantize, quantize_budget=quantize_budget)
    x = bf16_bits_to_f32(x_bits)
    amax_x = float(np.abs(x).max()) if tokens else 1.0
    fc1 = np.array([amax_x / (E2M1_MAX * E4M3_MAX)], np.float32)
    a_amax = _estimate_act_amax(x, ids, w13, w13_sf, w13_gs, inter, fc1) if tokens else \
        np.full(num_experts, 4.0)
    fc2 = np.array([a_amax.max() / (E2M1_MAX * E4M3_MAX)], np.float32)
    if input_scales == "per_expert":
        # per-expert calibration (fc2 from each expert's own estimate), times a random factor
        f = np.exp(rng.uniform(np.log(0.7), np.log(2.0), size=(2, num_experts)))
        fc1 = (fc1[0] * f[0]).astype(np.float32)
        fc2 = (a_amax / (E2M1_MAX * E4M3_MAX) * f[1]).astype(np.float32)
    elif input_scales != "scalar":
        raise ValueError(input_scales)
    return Problem(num_experts=num_experts, local_expert_offset=0, top_k=top_k, hidden=hidden,
                   inter=inter, x_bits=x_bits, topk_ids=ids, topk_weights=w, w13=w13,
                   w13_scale=w13_sf, w13_global_scale=w13_gs, w2=w2, w2_scale=w2_sf,
                   w2_global_scale=w2_gs, fc1_input_scale=fc1, fc2_input_scale=fc2, name=name)


def rel_l2(out: np.ndarray, ref: np.ndarray) -> float:
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    den = float(np.linalg.norm(ref))
    num = float(np.linalg.norm(out - ref))
    return num / den if den > 0 else (0.0 if num == 0 else float("inf"))


# --------------------------------------------------------------------------------------------
# GPU backends for the demo (torch preferred, CuPy otherwise); pymoe itself imports neither
# --------------------------------------------------------------------------------------------
class _TorchBackend:
    name = "torch"

    def __init__(self):
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        self.torch = torch

    def put(self, a: np.ndarray, bf16: bool = False):
        t = self.torch.from_numpy(np.ascontiguousarray(a).view(np.int16) if bf16 else
                                  np.ascontiguousarray(a)).cuda()
        return t.view(self.torch.bfloat16) if bf16 else t

    def empty_bf16(self, shape):
        return self.torch.empty(shape, dtype=self.torch.bfloat16, device="cuda")

    def empty_u8(self, shape):
        return self.torch.empty(shape, dtype=self.torch.uint8, device="cuda")

    def get(self, t, bf16: bool = False) -> np.ndarray:
        if bf16:
            return t.view(self.torch.int16).cpu().numpy().view(np.uint16)
        return t.cpu().numpy()

    def stream(self) -> int:
        return self.torch.cuda.current_stream().cuda_stream

    def sync(self):
        self.torch.cuda.synchronize()

    def device_name(self) -> str:
        return self.torch.cuda.get_device_name()


class _CupyBackend:
    name = "cupy"

    def __init__(self):
        import cupy
        import ml_dtypes  # CuPy's bf16 support goes through ml_dtypes
        self.cp, self.bf16 = cupy, ml_dtypes.bfloat16
        if cupy.cuda.runtime.getDeviceCount() == 0:
            raise RuntimeError("CuPy sees no CUDA device")

    def put(self, a: np.ndarray, bf16: bool = False):
        d = self.cp.asarray(np.ascontiguousarray(a))
        return d.view(self.bf16) if bf16 else d

    def empty_bf16(self, shape):
        return self.cp.empty(shape, dtype=self.cp.uint16).view(self.bf16)

    def empty_u8(self, shape):
        return self.cp.empty(shape, dtype=self.cp.uint8)

    def get(self, t, bf16: bool = False) -> np.ndarray:
        return self.cp.asnumpy(t.view(self.cp.uint16) if bf16 else t)

    def stream(self) -> int:
        return self.cp.cuda.get_current_stream().ptr

    def sync(self):
        self.cp.cuda.Device().synchronize()

    def device_name(self) -> str:
        props = self.cp.cuda.runtime.getDeviceProperties(self.cp.cuda.Device().id)
        n = props.get("name", b"GPU")
        return n.decode() if isinstance(n, bytes) else str(n)


def _gpu_backend():
    """(backend, None) or (None, reason)."""
    try:
        import pymoe
        n = pymoe.device_count()
    except Exception as e:  # the extension or the driver is missing
        return None, f"pymoe's CUDA core is unavailable ({type(e).__name__}: {e})"
    if n == 0:
        return None, "pymoe.device_count() == 0"
    errors = []
    for cls in (_TorchBackend, _CupyBackend):
        try:
            return cls(), None
        except Exception as e:
            errors.append(f"{cls.name}: {type(e).__name__}: {e}")
    return None, "a GPU is present but neither torch nor CuPy is usable (" + "; ".join(errors) + ")"


# --------------------------------------------------------------------------------------------
# The two demo paths
# --------------------------------------------------------------------------------------------
def run_cpu(seed: int = 0) -> int:
    """Reference only, tiny shape: shows what the layer computes."""
    from pymoe import reference
    E, k, H, I, T = 8, 2, 128, 128, 4
    p = make_problem(num_experts=E, top_k=k, hidden=H, inter=I, tokens=T, seed=seed,
                     weight_mode="quantized", name="tiny")
    print("moe12x computes, for T tokens routed to top_k of E experts (SPEC §1):")
    print("  out[t] = bf16( sum_j w[t,j] * W2[e] · quant( silu(gate) * up ) ),")
    print("  [up; gate] = W13[e] · quant(x[t]),  e = topk_ids[t,j];  W13, W2 are NVFP4 (e2m1 codes,")
    print("  one e4m3 scale per 16 values, one fp32 global scale per expert).")
    print()
    print(f"shape: E={E} experts, top_k={k}, hidden H={H}, intermediate I={I}, T={T} tokens")
    print(f"  x            bf16   {p.x_bits.shape}")
    print(f"  topk_ids     int32  {p.topk_ids.shape}    topk_weights fp32 {p.topk_weights.shape}")
    print(f"  w13          uint8  {p.w13.shape}  (E, 2I, H/2: two e2m1 codes per byte)")
    print(f"  w13_scale    uint8  {p.w13_scale.shape}   (E, 2I, H/16: e4m3 block scales)")
    print(f"  w2           uint8  {p.w2.shape}  (E, H, I/2)")
    print(f"  w2_scale     uint8  {p.w2_scale.shape}    (E, H, I/16)")
    print(f"  global scales fp32 w13 {p.w13_global_scale.shape}, w2 {p.w2_global_scale.shape}; "
          f"input scales fc1={p.fc1_input_scale[0]:.3g}, fc2={p.fc2_input_scale[0]:.3g}")
    print()
    print("routing (token: expert x weight, ...):")
    for t in range(T):
        pairs = ", ".join(f"{int(e)} x {w:.3f}" for e, w in zip(p.topk_ids[t], p.topk_weights[t]))
        print(f"  token {t}: {pairs}")
    print()
    # a round trip through the quantizer, to show what NVFP4 does to a row
    row = p.x[0, :16]
    gs = np.float32(np.abs(p.x).max() / (E2M1_MAX * E4M3_MAX))
    q, sf = reference.quantize_nvfp4(row.reshape(1, 16), gs, "row_major")
    back = np.asarray(reference.dequantize_nvfp4(q, sf, gs, 16, "row_major")).reshape(-1)
    print("NVFP4 round trip of x[0, :16] (one block, one e4m3 scale):")
    print("  x      ", np.array2string(row[:8], precision=3, suppress_small=True), "...")
    print("  deq(q) ", np.array2string(back[:8].astype(np.float32), precision=3,
                                       suppress_small=True), "...")
    print()
    t0 = time.perf_counter()
    out_n = p.reference("nvfp4")
    out_b = p.reference("none")
    dt = time.perf_counter() - t0
    print(f"out = layer(x): float32 view of bf16 values, shape {out_n.shape}")
    for t in range(T):
        print(f"  out[{t}, :6] act_quant=nvfp4 ", np.array2string(out_n[t, :6], precision=4))
    print("  out[0, :6] act_quant=none  ", np.array2string(out_b[0, :6], precision=4))
    print(f"  W4A4 (nvfp4) vs W4A16 (none): relative L2 difference {rel_l2(out_n, out_b):.3e}")
    ok = bool(np.isfinite(out_n).all() and np.isfinite(out_b).all())
    print(f"reference time {dt * 1e3:.1f} ms; outputs finite: {ok}")
    return 0 if ok else 1


# The demo's pass bound: same constant as the tests' nvfp4-mode bound (tests/gpu_util.py).
DEMO_REL_L2_BOUND = 1e-2


def run_gpu(backend, shape: str = "qwen3-30b-a3b", experts: int = 32, tokens: int = 16,
            act_quant: str = "nvfp4", seed: int = 0, iters: int = 50) -> int:
    import pymoe
    s = dict(MODEL_SHAPES[shape])
    E, k, H, I = min(experts, s["num_experts"]), s["top_k"], s["hidden"], s["inter"]
    print(f"GPU: {backend.device_name()} (arrays via {backend.name}); pymoe {pymoe.__version__}")
    print(f"shape {shape}: E={E} (of {s['num_experts']}), top_k={k}, H={H}, I={I}, T={tokens}, "
          f"act_quant={act_quant}")

    def gpu_quantize(w_f32, gs):
        # the public GPU quantizer (bit-exact with pymoe.reference.quantize_nvfp4)
        rows, kk = w_f32.shape
        xd = backend.put(f32_to_bf16_bits(w_f32), bf16=True)
        gd = backend.put(np.array([gs], np.float32))
        qd, sd = backend.empty_u8((rows, kk // 2)), backend.empty_u8((rows, kk // 16))
        pymoe.quantize_nvfp4(xd, gd, qd, sd, scale_layout="row_major", stream=backend.stream())
        return backend.get(qd), backend.get(sd)

    t0 = time.perf_counter()
    p = make_problem(num_experts=E, top_k=k, hidden=H, inter=I, tokens=tokens, seed=seed,
                     weight_mode="quantized", quantize=gpu_quantize,
                     quantize_budget=1 << 40, name=shape)
    print(f"random NVFP4 weights quantized on the GPU in {time.perf_counter() - t0:.1f} s")
    put = backend.put
    layer = pymoe.MoELayer(put(p.w13), put(p.w13_scale), put(p.w13_global_scale), put(p.w2),
                           put(p.w2_scale), put(p.w2_global_scale), put(p.fc1_input_scale),
                           put(p.fc2_input_scale), top_k=k, max_tokens=tokens,
                           act_quant=act_quant, stream=backend.stream())
    x, ids, w = put(p.x_bits, bf16=True), put(p.topk_ids), put(p.topk_weights)
    # out poisoned with bf16 NaN so that any element the kernel leaves unwritten shows up
    out = put(np.full((tokens, H), BF16_NAN_BITS, np.uint16), bf16=True)
    layer(x, ids, w, out, stream=backend.stream())
    backend.sync()
    got = bf16_bits_to_f32(backend.get(out, bf16=True))
    # timing: many back-to-back calls, wall clock after a sync (includes host overhead)
    for _ in range(5):
        layer(x, ids, w, out, stream=backend.stream())
    backend.sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        layer(x, ids, w, out, stream=backend.stream())
    backend.sync()
    us = (time.perf_counter() - t0) / iters * 1e6
    t0 = time.perf_counter()
    ref = p.reference(act_quant)
    t_ref = time.perf_counter() - t0
    err = rel_l2(got, ref)
    finite = bool(np.isfinite(got).all())
    ok = finite and err < DEMO_REL_L2_BOUND
    print(f"out[0, :6]  gpu {np.array2string(got[0, :6], precision=4)}")
    print(f"out[0, :6]  ref {np.array2string(ref[0, :6], precision=4)}")
    print(f"relative L2 error vs NumPy reference: {err:.3e} (bound {DEMO_REL_L2_BOUND:g}); "
          f"all elements written: {finite}")
    print(f"time per layer call: {us:.1f} us (eager, incl. host overhead; reference "
          f"{t_ref:.1f} s)")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pymoe.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="NumPy reference only")
    ap.add_argument("--shape", default="qwen3-30b-a3b", choices=sorted(MODEL_SHAPES))
    ap.add_argument("--experts", type=int, default=32, help="reduce E to this (memory/time)")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--act-quant", default="nvfp4", choices=["nvfp4", "none"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.cpu:
        backend, why = _gpu_backend()
        if backend is not None:
            return run_gpu(backend, args.shape, args.experts, args.tokens, args.act_quant,
                           args.seed)
        if why.startswith("a GPU is present"):
            print(why)
        print(f"no CUDA GPU found: running the NumPy reference only ({why})")
    else:
        print("--cpu: running the NumPy reference only")
    print()
    return run_cpu(args.seed)


if __name__ == "__main__":
    sys.exit(main())
