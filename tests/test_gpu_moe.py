"""GPU tests of the fused MoE layer against the NumPy reference, and its contracts (SPEC §1, §3-5).

Every run writes into an output poisoned with bf16 NaN (0x7FC0) and checks that every element
was written. Tolerances and their derivation: tests/gpu_util.py (REL_L2_BOUND, NONE_ULPS,
BF16_U). Measured errors are printed as "MOE12X-ERR ..." lines (pytest -s) for tightening.

Skipped (with the reason) without torch, without a CUDA device, or when
pymoe.device_count() == 0. Runtime is dominated by the NumPy reference; shapes are sized so the
whole file takes about 1-2 minutes on the GPU host.
"""

from __future__ import annotations

import functools
import os
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_util as G  # noqa: E402
from gpu_util import requires_gpu  # noqa: E402

pytestmark = [pytest.mark.gpu]

ACT = ["nvfp4", "none"]


@pytest.mark.skipif(not G.HAVE_CUDA_TORCH, reason="torch with a CUDA device is needed")
def test_pymoe_imports_on_a_gpu_machine():
    """On a machine with a GPU, pymoe must import and see the device (else everything skips)."""
    assert G.PYMOE_IMPORT_ERROR is None, f"pymoe failed to import: {G.PYMOE_IMPORT_ERROR}"
    import pymoe
    assert pymoe.device_count() >= 1


# ============================================================================================
# Problems (cached: generation and the reference are the slow parts)
# ============================================================================================
# The four model shapes, reduced in E (the NumPy reference dequantizes whole experts) and T.
MODEL_CASES = {
    "qwen3-30b-a3b": dict(num_experts=16, tokens=64),
    "qwen3-235b-a22b": dict(num_experts=12, tokens=32),
    "gpt-oss-120b": dict(num_experts=8, tokens=40),    # H = I = 2880: not a multiple of 128
    "deepseek-v3": dict(num_experts=8, tokens=32),
}

# Odd shapes and routings. H, I multiples of 64 (the C ABI's constraint).
ODD_CASES = {
    "E60_k4_T37": dict(num_experts=60, top_k=4, hidden=320, inter=192, tokens=37),
    "k1_T64": dict(num_experts=16, top_k=1, hidden=512, inter=256, tokens=64),
    "T1_qwen30b": dict(num_experts=32, top_k=8, hidden=2048, inter=768, tokens=1),
    "T3": dict(num_experts=16, top_k=8, hidden=1024, inter=512, tokens=3),
    "T517": dict(num_experts=32, top_k=8, hidden=512, inter=256, tokens=517),
    "T4099": dict(num_experts=64, top_k=8, hidden=256, inter=128, tokens=4099),
    # the upper bound on T (262,144 routed rows; from 4096 pairs the grouped schedule
    # routes with route_count_kernel + route_scatter_kernel, cpp/routing/route_pack.cu)
    "T65536": dict(num_experts=16, top_k=4, hidden=128, inter=128, tokens=65536),
    # activation block scales (x and the intermediate) mostly e4m3 subnormals
    "subnormal_act_scales": dict(num_experts=16, top_k=4, hidden=512, inter=256, tokens=64,
                                 subnormal_act=True),
    "k16_T20": dict(num_experts=32, top_k=16, hidden=256, inter=128, tokens=20),
    "E_eq_k_T70": dict(num_experts=4, top_k=4, hidden=256, inter=256, tokens=70),
    # all tokens on one expert: > 64 and > 128 rows in one expert's tile (a seed bug) ...
    "skewed_T300_k4": dict(num_experts=16, top_k=4, hidden=512, inter=256, tokens=300,
                           routing="skewed"),
    # ... > 1024 rows on one expert with few rows in total (static/dynamic boundary) ...
    "skewed_T1100_k1": dict(num_experts=8, top_k=1, hidden=256, inter=256, tokens=1100,
                            routing="skewed"),
    # ... and 2000 rows on one expert inside 16000 routed rows (dynamic schedule)
    "skewed_T2000_k8": dict(num_experts=16, top_k=8, hidden=256, inter=128, tokens=2000,
                            routing="skewed"),
}

# Option grid shape: H = 576 is not a multiple of 128 (W2's rows pad in the swizzled layout).
OPT_SHAPE = dict(num_experts=16, top_k=4, hidden=576, inter=320, tokens=40)


def _key(d: dict) -> tuple:
    return tuple(sorted(d.items()))


@functools.lru_cache(maxsize=None)
def problem(key: tuple) -> G.Problem:
    kw = dict(key)
    kw.setdefault("seed", zlib.crc32(repr(key).encode()))  # reproducible across processes
    tiny_act = kw.pop("subnormal_act", False)
    p = G.make_problem(**kw)
    if tiny_act:
        # x scaled by 2^-15 (exact in bf16) while fc1_input_scale stays calibrated for the
        # original x: the activation block scales become e4m3 subnormals (2^-9 .. 7*2^-9) or 0;
        # a shrinks by ~2^-30, and fc2_input_scale * 2^-20 puts a's block scales mostly in the
        # subnormal range too. Checks subnormal decode in the kernel's own quantizer.
        x = G.bf16_bits_to_f32(p.x_bits) * np.float32(2.0 ** -15)
        p = p.replace(x_bits=G.f32_to_bf16_bits(x),
                      fc2_input_scale=(p.fc2_input_scale * np.float32(2.0 ** -20)).astype(
                          np.float32))
    return p


@functools.lru_cache(maxsize=None)
def reference(key: tuple, act_quant: str) -> np.ndarray:
    return problem(key).reference(act_quant)


def model_key(shape: str) -> tuple:
    s = dict(G.MODEL_SHAPES[shape])
    s.update(MODEL_CASES[shape])
    s["name"] = shape
    s["seed"] = sum(map(ord, shape))
    return _key(s)


def small_key(**kw) -> tuple:
    d = dict(num_experts=32, top_k=8, hidden=512, inter=256, tokens=48, seed=7)
    d.update(kw)
    return _key(d)


# ============================================================================================
# Correctness against the reference
# ============================================================================================
@requires_gpu
@pytest.mark.parametrize("act_quant", ACT)
@pytest.mark.parametrize("shape", list(MODEL_CASES))
def test_model_shapes(shape, act_quant):
    key = model_key(shape)
    p = problem(key)
    w = G.prepare(p)
    out = G.run_fused(p, w, act_quant)
    G.assert_matches_reference(G.values(out), reference(key, act_quant), act_quant,
                               f"model {p.describe()}")


@requires_gpu
@pytest.mark.parametrize("act_quant", ACT)
@pytest.mark.parametrize("case", list(ODD_CASES))
def test_odd_shapes(case, act_quant):
    key = _key(dict(ODD_CASES[case], name=case, seed=sum(map(ord, case))))
    p = problem(key)
    out = G.run_fused(p, G.prepare(p), act_quant)
    G.assert_matches_reference(G.values(out), reference(key, act_quant), act_quant,
                               f"odd {case} {p.describe()}")


@requires_gpu
@pytest.mark.parametrize("input_scales", ["scalar", "per_expert"])
@pytest.mark.parametrize("scale_layout", ["row_major", "swizzled"])
@pytest.mark.parametrize("gate_up_order", ["up_gate", "gate_up"])
@pytest.mark.parametrize("act_quant", ACT)
def test_option_grid(act_quant, gate_up_order, scale_layout, input_scales):
    """Both act_quant modes x both gate/up orders x both scale layouts x scalar / per-expert
    input scales. The gate_up case stores W13's halves swapped (as checkpoints do) and says so:
    the reference of the unswapped problem is the expected result. Through MoELayer."""
    key = _key(dict(OPT_SHAPE, input_scales=input_scales, name="opt", seed=11))
    p = problem(key)
    q = p.with_gate_up_swapped() if gate_up_order == "gate_up" else p
    layer = G.make_layer(q, act_quant, scale_layout=scale_layout)
    out = G.poisoned((p.tokens, p.hidden))
    d = G.device_inputs(q)
    layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=G.stream())
    G.sync()
    G.assert_matches_reference(G.values(out), reference(key, act_quant), act_quant,
                               f"opt {gate_up_order} {scale_layout} {input_scales}")


@requires_gpu
@pytest.mark.parametrize("act_quant", ACT)
def test_layouts_and_orders_bitwise_equal(act_quant):
    """The same layer given as (up_gate | gate_up) x (row_major | swizzled) is the same layer:
    weight preparation must produce the same computation, so outputs are bitwise equal."""
    p = problem(_key(dict(OPT_SHAPE, input_scales="per_expert", name="opt", seed=11)))
    outs = {}
    for order in ("up_gate", "gate_up"):
        q = p.with_gate_up_swapped() if order == "gate_up" else p
        for layout in ("row_major", "swizzled"):
            outs[(order, layout)] = G.bits(G.run_fused(q, G.prepare(q, layout), act_quant))
    base = outs[("up_gate", "row_major")]
    for k, v in outs.items():
        G.assert_bitwise_equal(v, base, f"{k} vs ('up_gate', 'row_major')")


@requires_gpu
@pytest.mark.parametrize("act_quant", ACT)
def test_input_scale_forms_bitwise_equal(act_quant):
    """fc1/fc2_input_scale as 1 element or as E equal elements: the same numbers, bitwise."""
    p = problem(small_key(name="scales"))
    w = G.prepare(p)
    a = G.bits(G.run_fused(p, w, act_quant))
    E = p.num_experts
    q = p.replace(fc1_input_scale=np.full(E, p.fc1_input_scale[0], np.float32),
                  fc2_input_scale=np.full(E, p.fc2_input_scale[0], np.float32))
    b = G.bits(G.run_fused(q, w, act_quant))
    G.assert_bitwise_equal(b, a, "input scales [E] equal vs [1]")


@requires_gpu
def test_int64_ids_and_bf16_weights():
    """topk_ids int64 == int32, bitwise; topk_weights bf16 == fp32 holding the same values."""
    torch = G.torch
    p = problem(small_key(name="dtypes"))
    # make the routing weights bf16-representable so both dtypes carry the same numbers
    p = p.replace(topk_weights=G.bf16_bits_to_f32(G.f32_to_bf16_bits(p.topk_weights)))
    w = G.prepare(p)
    d = G.device_inputs(p)
    base = G.bits(G.run_fused(p, w, "nvfp4", inputs=d))
    d64 = dict(d, topk_ids=d["topk_ids"].to(torch.int64))
    G.assert_bitwise_equal(G.bits(G.run_fused(p, w, "nvfp4", inputs=d64)), base, "int64 ids")
    dbf = dict(d, topk_weights=d["topk_weights"].to(torch.bfloat16))
    G.assert_bitwise_equal(G.bits(G.run_fused(p, w, "nvfp4", inputs=dbf)), base,
                           "bf16 topk_weights")
    G.assert_matches_reference(G.values(base), p.reference("nvfp4"), "nvfp4",
                               "bf16-valued routing weights")


# ============================================================================================
# Schedules
# ============================================================================================
@requires_gpu
@pytest.mark.parametrize("tokens", [1, 24, 300])  # E=32, k=8: auto is static up to T=256
def test_forced_schedules_match_reference(tokens):
    """schedule="static" and "dynamic" forced at sizes where auto would pick the other one."""
    key = small_key(tokens=tokens, name=f"sched{tokens}")
    p = problem(key)
    w = G.prepare(p)
    ref = reference(key, "nvfp4")
    for sched in ("auto", "static", "dynamic"):
        out = G.run_fused(p, w, "nvfp4", schedule=sched)
        G.assert_matches_reference(G.values(out), ref, "nvfp4", f"schedule={sched} T={tokens}")


@requires_gpu
@pytest.mark.parametrize("tokens", [1, 24, 300])  # E=32, k=8: auto is static up to T=256
def test_static_and_dynamic_schedules_bitwise_equal(tokens):
    """SPEC §4: batch invariance whichever schedule runs, so a token's output cannot depend on
    the schedule either (a batch of 1 runs static, a batch of 4097 dynamic)."""
    p = problem(small_key(tokens=tokens, name=f"sched{tokens}"))
    w = G.prepare(p)
    a = G.bits(G.run_fused(p, w, "nvfp4", schedule="static"))
    b = G.bits(G.run_fused(p, w, "nvfp4", schedule="dynamic"))
    G.assert_bitwise_equal(b, a, f"dynamic vs static, T={tokens}")


@requires_gpu
@pytest.mark.parametrize("tokens", [2, 14, 24])  # ~1, ~7 (16-row decode kernel) and ~12 rows per expert
def test_decode_k_chunks_match_reference_and_static(tokens):
    """The decode kernels stage token rows in K chunks (1024 K for 8-row tiles, 512 for 16 and
    256 for 32): K = 2880 is 3, 6 and 12 chunks with a short last one, I = 1088 two and more. At
    T = 14 (a mean of 7 rows per expert) the 16-row tiles load each chunk during the previous
    chunk's MMAs (choose_act_prefetch). Matches the reference, and bitwise the static schedule
    (whose mainloop reads rows from registers)."""
    key = _key(dict(num_experts=8, top_k=4, hidden=2880, inter=1088, tokens=tokens, name=f"kchunks{tokens}",
                    seed=29 + tokens))
    p = problem(key)
    w = G.prepare(p)
    out = G.run_fused(p, w, "nvfp4", schedule="dynamic")
    G.assert_matches_reference(G.values(out), reference(key, "nvfp4"), "nvfp4", f"k chunks T={tokens}")
    G.assert_bitwise_equal(G.bits(out), G.bits(G.run_fused(p, w, "nvfp4", schedule="static")),
                           f"k chunks T={tokens}: dynamic vs static")


@requires_gpu
@pytest.mark.parametrize("act_quant", ACT)
@pytest.mark.parametrize("inter", [128, 192])
def test_wide_last_tiles(act_quant, inter):
    """Experts with 1..32 routed rows past a multiple of 128: on SM90 the wgmma kernel's last tile
    takes them (one wgmma of N = 144 or 160 instead of a second tile); 161 and 289 rows take a
    second tile. Matches the reference, and bitwise the static schedule. inter = 192: FC1's last
    256-row item is half past the matrix (its upper 64 features are not stored; on SM90 the FC1
    hand-off's producer warps skip them)."""
    counts = [129, 136, 150, 160, 161, 288, 289, 7]  # E = 8, top_k = 1: mean 165 rows per expert
    key = _key(dict(num_experts=8, top_k=1, hidden=256, inter=inter, tokens=sum(counts), name=f"wide{inter}", seed=11))
    rng = np.random.default_rng(5)
    ids = rng.permutation(np.repeat(np.arange(8, dtype=np.int32), counts)).reshape(-1, 1)
    p = problem(key).replace(topk_ids=ids)
    w = G.prepare(p)
    out = G.run_fused(p, w, act_quant)
    G.assert_matches_reference(G.values(out), p.reference(act_quant), act_quant, "wide last tiles")
    a = G.bits(G.run_fused(p, w, act_quant, schedule="static"))
    G.assert_bitwise_equal(G.bits(out), a, "wide last tiles: auto vs static")


# The static schedule's decode kernel (kernel/moe_decode.cuh, run with MOE12X_DECODE_KERNEL=1; without
# it the phase-barrier static kernel runs these, and must pass them too): up to 256 routed pairs,
# every CTA routes on its own (rows by (expert, pair), tiles of <= 16 rows), FC1 quantizes x as it
# stages it, FC2 items wait for their tile's FC1 m-blocks, one launch.
DECODE_ROUTINGS = ["uniform", "hot", "duplicates", "shard_invalid", "all_invalid"]


def _decode_problem(tokens: int, top_k: int, routing: str):
    """A problem and the reference it must match (dropped slots' weights zeroed)."""
    p = problem(small_key(tokens=tokens, top_k=top_k, num_experts=32, name=f"decode-{routing}{tokens}k{top_k}"))
    rng = np.random.default_rng(tokens * 31 + top_k)
    ids = p.topk_ids.copy()
    if routing == "hot":  # every slot of every token on expert 5: T k rows, several 16-row tiles
        ids[:] = 5
    elif routing == "duplicates":  # a token's slots 0 and 1 on the same expert
        ids[:, 1] = ids[:, 0]
    drop = np.zeros(ids.shape, bool)
    if routing == "shard_invalid":
        drop = rng.random(ids.shape) < 0.3
    elif routing == "all_invalid":
        drop[:] = True
    p = p.replace(topk_ids=np.where(drop, -1, ids).astype(np.int32))
    if routing == "shard_invalid":
        p = p.shard(1, 2)
    expected = p.replace(topk_weights=np.where(drop, 0, p.topk_weights).astype(np.float32))
    return p, expected


@requires_gpu
@pytest.mark.parametrize("act_quant", ACT)
@pytest.mark.parametrize("routing", DECODE_ROUTINGS)
@pytest.mark.parametrize("tokens,top_k", [(1, 8), (3, 8), (16, 8), (16, 16)])  # 16 x 16: the 256-pair limit
def test_decode_kernel_routings(tokens, top_k, routing, act_quant):
    """Uniform routing, one hot expert (16 k rows: several tiles), duplicate ids in a token, an
    expert-parallel shard with 30 % -1 ids, every id -1 (out exactly 0). Matches the reference and,
    bitwise, the dynamic schedule."""
    p, expected = _decode_problem(tokens, top_k, routing)
    w = G.prepare(p)
    st = G.run_fused(p, w, act_quant, schedule="static")
    if routing == "all_invalid":
        assert np.all(G.values(st) == 0), "every slot invalid: out must be exactly 0"
    else:
        G.assert_matches_reference(G.values(st), expected.reference(act_quant), act_quant,
                                   f"decode kernel {routing} T={tokens} k={top_k}")
    dyn = G.run_fused(p, w, act_quant, schedule="dynamic")
    G.assert_bitwise_equal(G.bits(st), G.bits(dyn), f"decode kernel {routing} T={tokens}: static vs dynamic")


@requires_gpu
@pytest.mark.parametrize("shape,tokens", [("qwen3-30b-a3b", 1), ("qwen3-30b-a3b", 16), ("qwen3-235b-a22b", 1),
                                          ("qwen3-235b-a22b", 16), ("gpt-oss-120b", 5)])
def test_decode_kernel_model_shapes(shape, tokens):
    """The model shapes' first tokens through the decode kernel: one m16 tile per warp where FC1's
    two-tile warps would not cover the SMs (qwen3-30b), two tiles elsewhere (qwen3-235b T = 16);
    K chunks with a short last one (gpt-oss, K = 2880). Reference, and bitwise the dynamic schedule."""
    base = problem(model_key(shape))
    p = base.replace(x_bits=base.x_bits[:tokens], topk_ids=base.topk_ids[:tokens],
                     topk_weights=base.topk_weights[:tokens])
    w = G.prepare(p)
    st = G.run_fused(p, w, "nvfp4", schedule="static")
    G.assert_matches_reference(G.values(st), p.reference("nvfp4"), "nvfp4", f"decode kernel {shape} T={tokens}")
    G.assert_bitwise_equal(G.bits(st), G.bits(G.run_fused(p, w, "nvfp4", schedule="dynamic")),
                           f"decode kernel {shape} T={tokens}: static vs dynamic")


@requires_gpu
def test_decode_kernel_graph_replays_and_repeats():
    """The decode kernel zeroes its own counters: captured once, replayed with a new routing each
    time (every slot on one expert in replay 2), and called eagerly in between, every result
    bitwise the eager one."""
    p = problem(_key(dict(num_experts=32, top_k=8, hidden=1024, inter=512, tokens=6, name="decode-graph", seed=23)))
    layer = G.make_layer(p, "nvfp4", max_tokens=16, schedule="static")

    def inputs(it):
        q = _fresh_inputs(p, 200 + it)
        return q.replace(topk_ids=np.full_like(q.topk_ids, 9)) if it == 2 else q

    _graph_replays_match_eager(p, layer, "nvfp4", inputs, 5, check_reference=(0, 2))


# FC2 + combine in output-column chunks (params.hpp: fc2_y_bytes, plan_fc2_chunks; c_api.cpp).
# With MOE12X_FC2_CHUNKS=1 a workspace sized for T (past 1024 pairs) holds about half of FC2's
# per-slot fp32 outputs, so the dynamic schedule runs FC2 and the combine per chunk;
# MOE12X_FC2_CHUNK_COLS=1 makes every FC2 m-block its own chunk. Both are read once per process:
# tests/gpu_fc2_chunks_child.py runs the cases under them.
# The item sizes named are nvfp4's on SM90; act "none" runs every case on the mma.sync kernels
# (128-row items; 64 for the last case).
FC2_CHUNK_CASES = {
    # 128 rows per expert: wgmma 128-token tiles (256-row items); H = 2880 -> 1536 + 1344
    "H2880_items256": dict(num_experts=32, top_k=4, hidden=2880, inter=256, tokens=1024),
    # 32 rows per expert: wgmma 64-token tiles (384-row items); H = 2048 -> 1152 + 896
    "H2048_items384": dict(num_experts=128, top_k=8, hidden=2048, inter=128, tokens=512),
    # 8 rows per expert: the mma.sync kernels (128-row items), 1024 + 1024
    "H2048_mma_sync": dict(num_experts=256, top_k=4, hidden=2048, inter=128, tokens=512),
    # 32 pairs on 8 experts: the one-tile-per-warp decode kernel (64-row items); too few pairs for
    # chunked sizes, so chunks only under MOE12X_FC2_CHUNK_COLS
    "H2048_items64": dict(num_experts=8, top_k=2, hidden=2048, inter=128, tokens=16),
}


def fc2_chunk_key(case: str) -> tuple:
    return _key(dict(FC2_CHUNK_CASES[case], name=f"fc2-chunks-{case}", seed=41))


def run_fc2_chunk_case(case: str, act_quant: str):
    """(output bits, workspace bytes, P * H * 4) of a dynamic-schedule layer sized for T."""
    p = problem(fc2_chunk_key(case))
    d = G.device_inputs(p)
    layer = G.make_layer(p, act_quant, max_tokens=p.tokens, schedule="dynamic", inputs=d)
    out = G.poisoned((p.tokens, p.hidden))
    layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=G.stream())
    G.sync()
    ws = layer.workspace_bytes
    layer.close()
    return G.bits(out), ws, p.tokens * p.top_k * p.hidden * 4


@functools.lru_cache(maxsize=None)
def _fc2_chunk_child(env_items: tuple):
    """(results, None) or (None, why): failures are cached too, so a broken child runs once per
    environment, not once per test; its output is in the message."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.npz")
        env = dict(os.environ, **dict(env_items))
        child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_fc2_chunks_child.py")
        try:
            r = subprocess.run([sys.executable, child, path], env=env, capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired as e:
            return None, f"child under {env_items} ran past 180 s:\n{e.stdout}\n{e.stderr}"
        if r.returncode != 0:
            return None, f"child under {env_items} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        with np.load(path) as z:
            return {k: z[k] for k in z.files}, None


@requires_gpu
@pytest.mark.parametrize("env", ["MOE12X_FC2_CHUNKS=1", "MOE12X_FC2_CHUNK_COLS=1"])
@pytest.mark.parametrize("act_quant", ACT)
@pytest.mark.parametrize("case", list(FC2_CHUNK_CASES))
def test_fc2_column_chunks_bitwise_equal(case, act_quant, env):
    """Column chunks change no arithmetic: FC2 + combine in two or three chunks (a workspace sized
    for T under MOE12X_FC2_CHUNKS=1, smaller than all columns' fp32 outputs) or one chunk per FC2
    m-block (MOE12X_FC2_CHUNK_COLS=1) give bitwise the one-pass output, every element written,
    for each FC2 kernel family (64-, 128-, 256- and 384-row items; chunk starts on them, a short
    last chunk)."""
    name, value = env.split("=")
    got, why = _fc2_chunk_child(((name, value),))
    assert got is not None, why
    bits, ws, y_all = got[f"{case}:{act_quant}:bits"], int(got[f"{case}:{act_quant}:ws"]), int(got[f"{case}:{act_quant}:y"])
    pairs = FC2_CHUNK_CASES[case]["tokens"] * FC2_CHUNK_CASES[case]["top_k"]
    if name == "MOE12X_FC2_CHUNKS" and pairs > 1024:  # the whole workspace is smaller than all columns' y
        assert ws < y_all, (ws, y_all)
    assert not np.any(bits == G.BF16_NAN_BITS), "chunked call left poisoned elements"
    one_pass, ws1, _ = run_fc2_chunk_case(case, act_quant)
    assert ws1 >= y_all or os.environ.get("MOE12X_FC2_CHUNKS") == "1", (ws1, y_all)
    G.assert_bitwise_equal(bits, one_pass, f"{case} {act_quant} under {env}: chunked vs one pass")


# ============================================================================================
# Invalid ids and expert parallelism
# ============================================================================================
@requires_gpu
@pytest.mark.parametrize("act_quant", ACT)
@pytest.mark.parametrize("tokens", [64, 8])
def test_invalid_ids_contribute_nothing(tokens, act_quant):
    """ids -1, E, 10E, -7, INT32_MAX (and, as int64, 2^32+1 and -2^40, which a truncation to
    32 bits would turn into valid experts) contribute nothing and never fault. Expected: the
    reference of the same routing with those slots' weights set to 0. 64 tokens run the wgmma
    kernels on SM90, 8 the mma.sync decode kernels."""
    torch = G.torch
    key = small_key(tokens=tokens, top_k=4, num_experts=16, name="invalid")
    p = problem(key)
    E = p.num_experts
    rng = np.random.default_rng(5)
    mask = rng.random(p.topk_ids.shape) < 0.3
    mask[:3] = True                        # tokens 0-2: every slot invalid -> out row == 0
    mask[3:6] = False
    bad_vals = np.array([-1, E, 10 * E, -7, 2 ** 31 - 1], np.int64)
    ids_bad = np.where(mask, bad_vals[rng.integers(0, len(bad_vals), mask.shape)],
                       p.topk_ids).astype(np.int32)
    zero_w = p.replace(topk_weights=np.where(mask, 0, p.topk_weights).astype(np.float32))
    w = G.prepare(p)
    d = G.device_inputs(p)
    d_bad = dict(d, topk_ids=G.dev(ids_bad))
    out = G.run_fused(p, w, act_quant, inputs=d_bad)
    got = G.values(out)
    assert np.all(got[:3] == 0), "tokens whose every slot is invalid must give exactly 0"
    G.assert_matches_reference(got, zero_w.reference(act_quant), act_quant,
                               "invalid ids (vs reference with zero weights)")
    # other invalid values in the same places: bitwise the same
    ids_bad2 = np.where(mask, -1, p.topk_ids).astype(np.int32)
    out2 = G.run_fused(p, w, act_quant, inputs=dict(d, topk_ids=G.dev(ids_bad2)))
    G.assert_bitwise_equal(G.bits(out2), G.bits(out), "invalid ids as -1 vs mixed")
    ids64 = np.where(mask, np.where(rng.random(mask.shape) < 0.5, 2 ** 32 + 1, -(2 ** 40)),
                     p.topk_ids).astype(np.int64)
    out3 = G.run_fused(p, w, act_quant, inputs=dict(d, topk_ids=G.dev(ids64)))
    G.assert_bitwise_equal(G.bits(out3), G.bits(out), "int64 ids 2^32+1 / -2^40 vs -1")
    # the context is still healthy: a valid call after the invalid ones works and is unchanged
    torch.cuda.synchronize()
    a = G.bits(G.run_fused(p, w, act_quant, inputs=d))
    b = G.bits(G.run_fused(p, w, act_quant, inputs=d))
    G.assert_bitwise_equal(a, b, "valid call after invalid ids")


@requires_gpu
@pytest.mark.parametrize("act_quant", ACT)
@pytest.mark.parametrize("count", [2, 4, 8])
def test_expert_parallel_sharding(count, act_quant):
    """Sum of the outputs of `count` shards (prepare_weights with num_experts=E,
    local_expert_offset, the shard's experts; all ids passed, other ranks' included) equals the
    unsharded output within the bf16 rounding of each shard (bound: gpu_util, BF16_U):
        |sum_s out_s - out| <= u/(1-u) (|out| + sum_s |out_s|) + 2^-16 max|out|.
    Shards alternate between per-expert input scales sliced to the shard ([E_local]) and the
    full [E] vector indexed by global id."""
    key = small_key(tokens=48, num_experts=32, input_scales="per_expert", name="ep")
    p = problem(key)
    full_t = G.run_fused(p, G.prepare(p), act_quant)
    full = G.values(full_t).astype(np.float64)
    G.assert_matches_reference(full, reference(key, act_quant), act_quant, "ep unsharded")
    outs = []
    for s in range(count):
        ps = p.shard(s, count, input_scales="local" if s % 2 == 0 else "global")
        ws = G.prepare(ps)
        assert ws.num_experts == p.num_experts
        assert ws.num_local_experts == p.num_experts // count
        assert ws.local_expert_offset == ps.local_expert_offset
        outs.append(G.values(G.run_fused(ps, ws, act_quant)).astype(np.float64))
    total = np.sum(outs, axis=0)
    bound = (G.BF16_U / (1 - G.BF16_U)) * (np.abs(full) + np.sum(np.abs(outs), axis=0)) \
        + G.SHARD_ABS_SLACK * float(np.abs(full).max())
    err = np.abs(total - full)
    viol = err > bound
    G._log(dict(case=f"ep{count}", act_quant=act_quant, rel_l2=f"{G.rel_l2(total, full):.3e}",
                max_err_over_bound=f"{float((err / bound).max()):.3f}"))
    assert not viol.any(), (f"{int(viol.sum())} of {viol.size} elements: sum of {count} shards "
                            f"differs from unsharded beyond bf16 rounding; worst ratio "
                            f"{float((err / bound).max()):.2f} at "
                            f"{np.unravel_index(int(np.argmax(err / bound)), err.shape)}")


@requires_gpu
@pytest.mark.parametrize("act_quant", ACT)
def test_many_pairs_routing_sharded_with_invalid_ids(act_quant):
    """From 4096 routed pairs the grouped schedule routes in two launches of 32 CTAs (per-chunk
    histograms, then every CTA scans them and scatters its own chunk). Shard 1 of 2 (other
    rank's ids in the batch), 20 % of slots -1 (int64 ids), every token's slot 0 on one expert
    (a hot expert counted by every chunk): matches the reference with the dropped slots'
    weights zeroed, and bitwise the static schedule, which routes on its own."""
    key = small_key(tokens=700, num_experts=32, top_k=8, hidden=256, inter=128, name="route-many")
    p = problem(key)
    rng = np.random.default_rng(21)
    ids = p.topk_ids.copy()
    hot = 20  # a local expert of shard 1 (experts 16..31)
    ids[:, 0] = np.where(ids[:, 0] == hot, ids[:, 0], hot)
    for t in np.nonzero((ids[:, 1:] == hot).any(axis=1))[0]:  # keep a token's experts distinct
        ids[t, 1:][ids[t, 1:] == hot] = [e for e in range(32) if e not in ids[t]][0]
    drop = rng.random(ids.shape) < 0.2
    p = p.replace(topk_ids=ids.astype(np.int32))
    ps = p.shard(1, 2)
    zero_w = ps.replace(topk_weights=np.where(drop, 0, ps.topk_weights).astype(np.float32))
    ws = G.prepare(ps)
    d = G.device_inputs(ps)
    d_bad = dict(d, topk_ids=G.dev(np.where(drop, -1, ids).astype(np.int64)))
    assert ps.tokens * ps.top_k >= 4096, "the sizes must reach the two-launch route"
    out = G.run_fused(ps, ws, act_quant, inputs=d_bad, schedule="dynamic")
    G.assert_matches_reference(G.values(out), zero_w.reference(act_quant), act_quant,
                               "many pairs, shard 1/2, -1 ids, hot expert")
    st = G.run_fused(ps, ws, act_quant, inputs=d_bad, schedule="static")
    G.assert_bitwise_equal(G.bits(out), G.bits(st), "many pairs: dynamic vs static")


# ============================================================================================
# Determinism, batch invariance
# ============================================================================================
@requires_gpu
@pytest.mark.parametrize("tokens", [5, 300])
@pytest.mark.parametrize("act_quant", ACT)
def test_determinism(act_quant, tokens):
    """Repeated runs (functional and layer, with other calls in between) are bitwise equal."""
    p = problem(small_key(tokens=tokens, name=f"det{tokens}"))
    other = problem(small_key(tokens=17, name="det-other"))
    w, wo = G.prepare(p), G.prepare(other)
    a = G.bits(G.run_fused(p, w, act_quant))
    G.run_fused(other, wo, act_quant)
    b = G.bits(G.run_fused(p, w, act_quant))
    layer = G.make_layer(p, act_quant)
    d = G.device_inputs(p)
    runs = []
    for _ in range(3):
        out = G.poisoned((p.tokens, p.hidden))
        layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=G.stream())
        runs.append(out)
    G.sync()
    G.assert_bitwise_equal(b, a, "functional run 2 vs 1")
    for i, r in enumerate(runs):
        G.assert_bitwise_equal(G.bits(r), a, f"layer run {i} vs functional")


@requires_gpu
def test_batch_invariance():
    """A token's output is bitwise the same alone (T=1), in a batch of 64 and in a batch of
    4097 (4,096 other tokens), wherever it sits."""
    big = problem(_key(dict(num_experts=32, top_k=8, hidden=1024, inter=512, tokens=4097,
                            name="batchinv", seed=3)))
    w = G.prepare(big)
    out_big = G.bits(G.run_fused(big, w, "nvfp4"))
    rng = np.random.default_rng(9)
    for pos in (0, 1234, 4096):
        def sub(rows):
            return big.replace(x_bits=big.x_bits[rows], topk_ids=big.topk_ids[rows],
                               topk_weights=big.topk_weights[rows])
        one = sub([pos])
        out_one = G.bits(G.run_fused(one, w, "nvfp4"))
        G.assert_bitwise_equal(out_one[0], out_big[pos], f"token {pos}: alone vs in 4097")
        others = [r for r in rng.choice(big.tokens, 70, replace=False) if r != pos][:63]
        rows = others[:31] + [pos] + others[31:]
        out_64 = G.bits(G.run_fused(sub(rows), w, "nvfp4"))
        G.assert_bitwise_equal(out_64[31], out_big[pos], f"token {pos}: in 64 vs in 4097")
        if pos == 1234:
            G.assert_matches_reference(G.bf16_bits_to_f32(out_one), one.reference("nvfp4"),
                                       "nvfp4", "batch-invariance token vs reference")


# ============================================================================================
# CUDA graphs, streams, T = 0
# ============================================================================================
def _fresh_inputs(p: G.Problem, seed: int):
    rng = np.random.default_rng(seed)
    x = G.random_activations(rng, p.tokens, p.hidden)
    # keep |x| within the amax the scalar fc1_input_scale was made for (realistic calibration)
    ids, tw = G.random_routing(rng, p.tokens, p.num_experts, p.top_k)
    return p.replace(x_bits=x, topk_ids=ids, topk_weights=tw)


@requires_gpu
@pytest.mark.parametrize("tokens,max_tokens,act_quant", [(64, 64, "nvfp4"), (5, 256, "none"),
                                                         (600, 600, "nvfp4")])
def test_cuda_graph_capture_and_replay(tokens, max_tokens, act_quant):
    """torch.cuda.graph around layer(...); copy_ new inputs into the static tensors; replay;
    each replay bitwise equal to an eager call on the same inputs (and to the reference once)."""
    p = problem(_key(dict(num_experts=32, top_k=8, hidden=1024, inter=512, tokens=tokens,
                          name=f"graph{tokens}", seed=21)))
    layer = G.make_layer(p, act_quant, max_tokens=max_tokens)
    _graph_replays_match_eager(p, layer, act_quant, lambda it: _fresh_inputs(p, 100 + it), 4, check_reference=(0,))


def _graph_replays_match_eager(p, layer, act_quant, inputs, replays, check_reference):
    """Captures layer(...) on static tensors once; for replay it, copies inputs(it) in, replays,
    and compares bitwise with an eager call on the same inputs (and with the reference for the
    replays in check_reference)."""
    torch = G.torch
    st = G.device_inputs(p)
    st_out = G.poisoned((p.tokens, p.hidden))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture, as torch recommends
        for _ in range(2):
            layer(st["x"], st["topk_ids"], st["topk_weights"], st_out, stream=side.cuda_stream)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        layer(st["x"], st["topk_ids"], st["topk_weights"], st_out, stream=G.stream())
    for it in range(replays):
        q = inputs(it)
        d = G.device_inputs(q)
        for name in ("x", "topk_ids", "topk_weights"):
            st[name].copy_(d[name])
        st_out.view(torch.int16).fill_(G.BF16_NAN_BITS)
        g.replay()
        G.sync()
        replayed = G.bits(st_out)
        eager = G.poisoned((p.tokens, p.hidden))
        layer(d["x"], d["topk_ids"], d["topk_weights"], eager, stream=G.stream())
        G.sync()
        G.assert_bitwise_equal(replayed, G.bits(eager), f"graph replay {it} vs eager")
        if it in check_reference:
            G.assert_matches_reference(G.bf16_bits_to_f32(replayed), q.reference(act_quant),
                                       act_quant, f"graph replay {it} T={p.tokens}")


@requires_gpu
@pytest.mark.parametrize("impl", ["layer", "functional"])
def test_two_streams_concurrently(impl):
    """Two layer objects (two workspaces) — or the functional call, whose cached workspace is
    per (device, stream) — running on two streams at once; each result bitwise equal to its
    eager, single-stream result."""
    torch = G.torch
    pa = problem(_key(dict(num_experts=32, top_k=8, hidden=1024, inter=512, tokens=256,
                           name="streamA", seed=31)))
    pb = problem(_key(dict(num_experts=16, top_k=4, hidden=1024, inter=512, tokens=7,
                           name="streamB", seed=32)))
    da, db = G.device_inputs(pa), G.device_inputs(pb)
    if impl == "layer":
        la, lb = G.make_layer(pa), G.make_layer(pb)

        def call(p, d, lay, out, s):
            lay(d["x"], d["topk_ids"], d["topk_weights"], out, stream=s)
    else:
        import pymoe
        la, lb = G.prepare(pa), G.prepare(pb)

        def call(p, d, w, out, s):
            pymoe.fused_moe(d["x"], d["topk_ids"], d["topk_weights"], w, d["fc1_input_scale"],
                            d["fc2_input_scale"], out=out, act_quant="nvfp4", stream=s)
    ea, eb = G.poisoned((pa.tokens, pa.hidden)), G.poisoned((pb.tokens, pb.hidden))
    call(pa, da, la, ea, G.stream())
    call(pb, db, lb, eb, G.stream())
    G.sync()
    n = 6
    outs_a = [G.poisoned((pa.tokens, pa.hidden)) for _ in range(n)]
    outs_b = [G.poisoned((pb.tokens, pb.hidden)) for _ in range(n)]
    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
    s1.wait_stream(torch.cuda.current_stream())
    s2.wait_stream(torch.cuda.current_stream())
    for i in range(n):
        with torch.cuda.stream(s1):
            call(pa, da, la, outs_a[i], s1.cuda_stream)
        with torch.cuda.stream(s2):
            call(pb, db, lb, outs_b[i], s2.cuda_stream)
    G.sync()
    for i in range(n):
        G.assert_bitwise_equal(G.bits(outs_a[i]), G.bits(ea), f"stream 1 run {i}")
        G.assert_bitwise_equal(G.bits(outs_b[i]), G.bits(eb), f"stream 2 run {i}")


@requires_gpu
def test_zero_tokens_leaves_out_untouched():
    import pymoe
    torch = G.torch
    p = problem(small_key(tokens=4, name="t0"))
    w = G.prepare(p)
    d = G.device_inputs(p)
    buf = G.poisoned((4, p.hidden))
    before = G.bits(buf)
    empty = dict(x=d["x"][0:0], topk_ids=d["topk_ids"][0:0], topk_weights=d["topk_weights"][0:0])
    pymoe.fused_moe(empty["x"], empty["topk_ids"], empty["topk_weights"], w,
                    d["fc1_input_scale"], d["fc2_input_scale"], out=buf[0:0], stream=G.stream())
    layer = G.make_layer(p, max_tokens=4)
    layer(empty["x"], empty["topk_ids"], empty["topk_weights"], buf[0:0], stream=G.stream())
    torch.cuda.synchronize()
    G.assert_bitwise_equal(G.bits(buf), before, "T=0 must write nothing")


# ============================================================================================
# API behaviour
# ============================================================================================
@requires_gpu
def test_layer_equals_functional_and_out_none():
    """MoELayer and fused_moe compute the same bits; out=None returns a pymoe.DeviceArray that
    torch can view (DLPack / CUDA array interface) holding the same bits."""
    import pymoe
    p = problem(small_key(tokens=33, name="api"))
    w = G.prepare(p)
    d = G.device_inputs(p)
    a = G.bits(G.run_fused(p, w, "nvfp4", inputs=d))
    r = pymoe.fused_moe(d["x"], d["topk_ids"], d["topk_weights"], w, d["fc1_input_scale"],
                        d["fc2_input_scale"], stream=G.stream())
    G.sync()
    assert isinstance(r, pymoe.DeviceArray), type(r)
    t = G.as_torch(r)
    assert tuple(t.shape) == (p.tokens, p.hidden) and t.dtype == G.torch.bfloat16
    G.assert_bitwise_equal(G.bits(t), a, "out=None result")
    layer = G.make_layer(p, max_tokens=64)
    out = G.poisoned((p.tokens, p.hidden))
    ret = layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=G.stream())
    G.sync()
    assert ret is out
    G.assert_bitwise_equal(G.bits(out), a, "layer vs functional")
    assert layer.max_tokens == 64 and layer.top_k == p.top_k
    assert layer.workspace_bytes > 0 and layer.prepared_bytes > 0
    assert w.num_experts == p.num_experts and w.num_local_experts == p.num_local_experts
    assert w.local_expert_offset == 0 and w.hidden_size == p.hidden
    assert w.intermediate_size == p.inter and w.nbytes > 0
    # a torch.cuda.Stream object (has __cuda_stream__ in recent torch) is accepted too
    s = G.torch.cuda.current_stream()
    if hasattr(s, "__cuda_stream__"):
        out2 = G.poisoned((p.tokens, p.hidden))
        layer(d["x"], d["topk_ids"], d["topk_weights"], out2, stream=s)
        G.sync()
        G.assert_bitwise_equal(G.bits(out2), a, "stream given as a torch.cuda.Stream")


def _bad_call_cases():
    """(name, mutate(d) -> d, expected exception, names the message may mention)."""
    T = 24
    cases = [
        ("x_float32", lambda d, t: d.update(x=d["x"].float()), TypeError, ["x"]),
        ("x_float16", lambda d, t: d.update(x=d["x"].half()), TypeError, ["x"]),
        ("ids_float32", lambda d, t: d.update(topk_ids=d["topk_ids"].float()), TypeError,
         ["topk_ids"]),
        ("ids_int16", lambda d, t: d.update(topk_ids=d["topk_ids"].to(t.int16)), TypeError,
         ["topk_ids"]),
        ("weights_float64", lambda d, t: d.update(topk_weights=d["topk_weights"].double()),
         TypeError, ["topk_weights"]),
        ("fc1_float64", lambda d, t: d.update(fc1_input_scale=d["fc1_input_scale"].double()),
         TypeError, ["fc1_input_scale"]),
        ("x_wrong_H", lambda d, t: d.update(x=t.zeros((T, d["x"].shape[1] + 64),
                                                     dtype=t.bfloat16, device="cuda") + 1),
         ValueError, ["x"]),
        ("x_3d", lambda d, t: d.update(x=d["x"].reshape(T, 1, -1)), ValueError, ["x"]),
        ("ids_rows", lambda d, t: d.update(topk_ids=t.cat([d["topk_ids"], d["topk_ids"][:1]])),
         ValueError, ["topk_ids", "x"]),
        ("weights_k_mismatch", lambda d, t: d.update(
            topk_weights=t.cat([d["topk_weights"], d["topk_weights"][:, :1]], 1).contiguous()),
         ValueError, ["topk_weights", "topk_ids"]),
        ("fc1_count3", lambda d, t: d.update(fc1_input_scale=d["fc1_input_scale"][:1].repeat(3)),
         ValueError, ["fc1_input_scale"]),
        ("x_cpu", lambda d, t: d.update(x=d["x"].cpu()), ValueError, ["x"]),
        ("ids_cpu", lambda d, t: d.update(topk_ids=d["topk_ids"].cpu()), ValueError,
         ["topk_ids"]),
        ("x_noncontiguous", lambda d, t: d.update(
            x=t.cat([d["x"], d["x"]], 1)[:, ::2]), ValueError, ["x"]),
        ("x_transposed", lambda d, t: d.update(
            x=d["x"].t().contiguous().t()), ValueError, ["x"]),
        ("x_misaligned", lambda d, t: d.update(
            x=t.cat([d["x"].reshape(-1), d["x"].reshape(-1)[:8]])[1:1 + d["x"].numel()]
            .view(d["x"].shape)), ValueError, ["x"]),
        ("out_float32", None, TypeError, ["out"]),
        ("out_wrong_H", None, ValueError, ["out"]),
        ("out_rows", None, ValueError, ["out"]),
        ("out_cpu", None, ValueError, ["out"]),
        ("out_noncontiguous", None, ValueError, ["out"]),
        ("out_misaligned", None, ValueError, ["out"]),
        ("act_quant_bad", None, ValueError, ["act_quant"]),
        ("schedule_bad", None, ValueError, ["schedule"]),
    ]
    return cases


_BAD = {c[0]: c for c in _bad_call_cases()}


def _make_bad_out(name, T, H):
    """(out passed to the call, buffer that must stay bitwise unchanged)."""
    torch = G.torch
    if name == "out_float32":
        o = torch.full((T, H), float("nan"), dtype=torch.float32, device="cuda")
        return o, o
    if name == "out_wrong_H":
        o = G.poisoned((T, H - 64))
        return o, o
    if name == "out_rows":
        o = G.poisoned((T + 1, H))
        return o, o
    if name == "out_cpu":
        o = torch.empty((T, H), dtype=torch.bfloat16)
        o.view(torch.int16).fill_(G.BF16_NAN_BITS)
        return o, o
    if name == "out_noncontiguous":
        big = G.poisoned((T, 2 * H))
        return big[:, ::2], big
    if name == "out_misaligned":
        big = G.poisoned((T * H + 8,))
        return big[1:1 + T * H].view(T, H), big
    o = G.poisoned((T, H))
    return o, o


@requires_gpu
@pytest.mark.parametrize("impl", ["functional", "layer"])
@pytest.mark.parametrize("case", list(_BAD))
def test_bad_inputs_raise_and_write_nothing(case, impl):
    """Each bad argument: the documented exception (TypeError for dtype, ValueError for shape /
    stride / device / alignment / size / option), naming the argument; the output is bitwise
    unchanged (poisoned before, compared after) and the context stays healthy."""
    import pymoe
    torch = G.torch
    name, mutate, exc, names = _BAD[case]
    if impl == "layer" and case in ("act_quant_bad", "schedule_bad"):
        pytest.skip("act_quant/schedule are layer constructor options (tested separately)")
    p = problem(small_key(tokens=24, name="bad"))
    d = G.device_inputs(p)
    if mutate is not None:
        mutate(d, torch)
    out, guard = _make_bad_out(case, p.tokens, p.hidden)
    guard_before = guard.detach().clone()
    kw = {}
    if case == "act_quant_bad":
        kw["act_quant"] = "fp8"
    if case == "schedule_bad":
        kw["schedule"] = "fastest"
    # everything that must succeed happens before the pytest.raises block
    if impl == "functional":
        w = G.prepare(p)

        def call():
            pymoe.fused_moe(d["x"], d["topk_ids"], d["topk_weights"], w, d["fc1_input_scale"],
                            d["fc2_input_scale"], out=out, stream=G.stream(), **kw)
    elif case.startswith("fc1"):  # input scales are layer constructor arguments
        def call():
            layer = G.make_layer(p, inputs=d)
            layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=G.stream())
    else:
        layer = G.make_layer(p, inputs=G.device_inputs(p))

        def call():
            layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=G.stream())
    torch.cuda.synchronize()
    with pytest.raises((TypeError, ValueError, pymoe.MoeError)) as ei:
        call()
    torch.cuda.synchronize()
    msg = str(ei.value)
    assert isinstance(ei.value, exc), f"{case}: expected {exc.__name__}, got " \
                                      f"{type(ei.value).__name__}: {msg}"
    assert any(n in msg for n in names), f"{case}: message does not name {names}: {msg!r}"
    assert torch.equal(guard.view(torch.uint8), guard_before.view(torch.uint8)), \
        f"{case}: output was written"
    # healthy context afterwards
    G.run_fused(p, G.prepare(p), "nvfp4")


@requires_gpu
def test_layer_rejects_more_tokens_than_max_tokens_and_wrong_top_k():
    import pymoe
    torch = G.torch
    p = problem(small_key(tokens=24, name="bad"))
    d = G.device_inputs(p)
    layer = G.make_layer(p, max_tokens=23)
    out = G.poisoned((p.tokens, p.hidden))
    with pytest.raises(ValueError):
        layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=G.stream())
    layer = G.make_layer(p, max_tokens=24)
    ids = torch.cat([d["topk_ids"], d["topk_ids"][:, :1]], 1).contiguous()
    tw = torch.cat([d["topk_weights"], d["topk_weights"][:, :1]], 1).contiguous()
    with pytest.raises(ValueError):
        layer(d["x"], ids, tw, out, stream=G.stream())
    torch.cuda.synchronize()
    assert (G.bits(out) == G.BF16_NAN_BITS).all(), "a rejected call wrote into out"
    for kw in (dict(act_quant="fp8"), dict(schedule="fastest"), dict(scale_layout="col"),
               dict(top_k=0)):
        with pytest.raises((ValueError, pymoe.MoeError)):
            wd = G.device_weights(p)
            args = dict(top_k=p.top_k, max_tokens=8)
            args.update(kw)
            pymoe.MoELayer(wd["w13"], wd["w13_scale"], wd["w13_global_scale"], wd["w2"],
                           wd["w2_scale"], wd["w2_global_scale"], d["fc1_input_scale"],
                           d["fc2_input_scale"], stream=G.stream(), **args)


@requires_gpu
def test_prepare_weights_rejects_bad_weights():
    import pymoe
    torch = G.torch
    p = problem(small_key(tokens=4, name="badw"))
    good = G.device_weights(p)
    order = ("w13", "w13_scale", "w13_global_scale", "w2", "w2_scale", "w2_global_scale")

    def call(**over):
        wd = dict(good)
        opts = {k: over.pop(k) for k in list(over) if k not in wd}
        wd.update(over)
        return pymoe.prepare_weights(*(wd[k] for k in order), stream=G.stream(), **opts)

    E = p.num_experts
    with pytest.raises(ValueError, match="w13|w2"):
        call(w13=good["w13"][:, :-2].contiguous())
    with pytest.raises(ValueError, match="w13|w2"):
        call(w2=good["w2"][:-1].contiguous())
    with pytest.raises(ValueError, match="w13_scale"):
        call(w13_scale=good["w13_scale"][:, :, :-1].contiguous())
    with pytest.raises(TypeError, match="w13_global_scale"):
        call(w13_global_scale=good["w13_global_scale"].half())
    with pytest.raises(TypeError, match="w2"):
        call(w2=good["w2"].to(torch.int32))
    with pytest.raises(ValueError, match="w13"):
        call(w13=good["w13"].cpu())
    with pytest.raises(ValueError):
        call(scale_layout="col_major")
    with pytest.raises(ValueError):
        call(gate_up_order="gate_then_up")
    with pytest.raises((ValueError, pymoe.MoeError)):
        call(num_experts=E, local_expert_offset=1)        # offset + E_local > E
    with pytest.raises(ValueError):
        # swizzled layout given row-major-sized scales (fewer bytes: rows pad to 128)
        call(scale_layout="swizzled", w2_scale=good["w2_scale"][:, :1].contiguous())
    torch.cuda.synchronize()
