"""The same MoE call from every array producer pymoe accepts, bitwise identical results (SPEC §5).

torch (DLPack) is the baseline; then CuPy (DLPack, and its stream object's .ptr), JAX (DLPack,
out=None -> pymoe.DeviceArray), Numba device arrays (__cuda_array_interface__ v3), wrappers that
expose only __dlpack__ or only __cuda_array_interface__, and torch's float4_e2m1fn_x2 /
float8_e4m3fn views of the weight bytes. Weights are prepared from each producer's own arrays.
Each framework's test is skipped (with the reason) when that framework is missing.

bf16 has no __cuda_array_interface__ type string (torch refuses to export one; CuPy's would be
the ambiguous "<V2"; Numba has no bf16 arrays), so on the CAI paths x and out stay torch
tensors (DLPack) while every other argument goes through the CAI.
"""

from __future__ import annotations

import functools
import os
import sys

# JAX must not grab 75% of the GPU at import (torch, CuPy and pymoe share the device)
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_util as G  # noqa: E402
from gpu_util import requires_gpu  # noqa: E402

pytestmark = [pytest.mark.gpu]

WEIGHT_NAMES = ("w13", "w13_scale", "w13_global_scale", "w2", "w2_scale", "w2_global_scale")


@functools.lru_cache(maxsize=None)
def prob() -> G.Problem:
    return G.make_problem(num_experts=16, top_k=4, hidden=512, inter=256, tokens=33, seed=1234,
                          input_scales="per_expert", name="frameworks")


@functools.lru_cache(maxsize=None)
def baseline(act_quant: str = "nvfp4") -> np.ndarray:
    """torch tensors through DLPack: the bits every other producer must reproduce."""
    p = prob()
    out = G.run_fused(p, G.prepare(p), act_quant)
    bits = G.bits(out)
    G.assert_matches_reference(G.bf16_bits_to_f32(bits), p.reference(act_quant), act_quant,
                               "frameworks baseline (torch)")
    return bits


def _host_arrays(p: G.Problem) -> dict:
    return dict(w13=p.w13, w13_scale=p.w13_scale, w13_global_scale=p.w13_global_scale,
                w2=p.w2, w2_scale=p.w2_scale, w2_global_scale=p.w2_global_scale,
                topk_ids=p.topk_ids, topk_weights=p.topk_weights,
                fc1_input_scale=p.fc1_input_scale, fc2_input_scale=p.fc2_input_scale)


def _call(a: dict, x, out, stream, act_quant="nvfp4"):
    """prepare_weights + fused_moe from the arrays in `a` (any producer)."""
    import pymoe
    p = prob()
    w = pymoe.prepare_weights(*(a[k] for k in WEIGHT_NAMES), num_experts=p.num_experts,
                              stream=stream)
    return pymoe.fused_moe(x, a["topk_ids"], a["topk_weights"], w, a["fc1_input_scale"],
                           a["fc2_input_scale"], out=out, act_quant=act_quant, stream=stream)


def _layer_call(a: dict, x, out, stream):
    import pymoe
    p = prob()
    layer = pymoe.MoELayer(*(a[k] for k in WEIGHT_NAMES), a["fc1_input_scale"],
                           a["fc2_input_scale"], top_k=p.top_k, max_tokens=p.tokens,
                           num_experts=p.num_experts, stream=stream)
    return layer(x, a["topk_ids"], a["topk_weights"], out, stream=stream)


# ============================================================================================
# torch
# ============================================================================================
@requires_gpu
@pytest.mark.parametrize("act_quant", ["nvfp4", "none"])
def test_torch_baseline_matches_reference(act_quant):
    baseline(act_quant)


class DLPackOnly:
    """Exposes only the DLPack protocol of a tensor."""

    def __init__(self, t):
        self._t = t

    def __dlpack__(self, *args, **kw):
        return self._t.__dlpack__(*args, **kw)

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


class CAIOnly:
    """Exposes only __cuda_array_interface__ (of a torch tensor, CuPy or Numba array)."""

    def __init__(self, a):
        self._a = a

    @property
    def __cuda_array_interface__(self):
        return self._a.__cuda_array_interface__


@requires_gpu
def test_dlpack_only_and_cai_only_wrappers():
    p = prob()
    a = {k: G.dev(v) for k, v in _host_arrays(p).items()}
    x = G.dev_bf16(p.x_bits)
    # every argument DLPack-only (bf16 included)
    out = G.poisoned((p.tokens, p.hidden))
    _call({k: DLPackOnly(v) for k, v in a.items()}, DLPackOnly(x), DLPackOnly(out), G.stream())
    G.sync()
    G.assert_bitwise_equal(G.bits(out), baseline(), "DLPack-only wrappers")
    # every non-bf16 argument CAI-only
    out = G.poisoned((p.tokens, p.hidden))
    _call({k: CAIOnly(v) for k, v in a.items()}, x, out, G.stream())
    G.sync()
    G.assert_bitwise_equal(G.bits(out), baseline(), "CAI-only wrappers")


@requires_gpu
def test_torch_fp4_and_fp8_dtype_views():
    """w13/w2 as torch.float4_e2m1fn_x2 and scales as torch.float8_e4m3fn views of the bytes."""
    torch = G.torch
    if not hasattr(torch, "float4_e2m1fn_x2") or not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("this torch has no float4_e2m1fn_x2 / float8_e4m3fn")
    p = prob()
    a = {k: G.dev(v) for k, v in _host_arrays(p).items()}
    for k in ("w13", "w2"):
        a[k] = a[k].view(torch.float4_e2m1fn_x2)
    for k in ("w13_scale", "w2_scale"):
        a[k] = a[k].view(torch.float8_e4m3fn)
    out = G.poisoned((p.tokens, p.hidden))
    _call(a, G.dev_bf16(p.x_bits), out, G.stream())
    G.sync()
    G.assert_bitwise_equal(G.bits(out), baseline(), "torch fp4/fp8 dtype views")


# ============================================================================================
# CuPy
# ============================================================================================
def _cupy():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("CuPy sees no device")
    except Exception as e:
        pytest.skip(f"CuPy cannot use the GPU: {e}")
    return cupy


def _cupy_bf16(cupy, bits: np.ndarray):
    """uint16 bits -> a CuPy bf16 array (CuPy >= 14 with ml_dtypes), or skip."""
    try:
        import ml_dtypes
        return cupy.asarray(bits).view(ml_dtypes.bfloat16)
    except Exception as e1:
        try:  # via DLPack from torch
            return cupy.from_dlpack(G.dev_bf16(bits))
        except Exception as e2:
            pytest.skip(f"CuPy has no bfloat16 here ({e1}; {e2})")


@requires_gpu
@pytest.mark.parametrize("which", ["functional", "layer"])
def test_cupy_arrays(which):
    cupy = _cupy()
    p = prob()
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        a = {k: cupy.asarray(v) for k, v in _host_arrays(p).items()}
        x = _cupy_bf16(cupy, p.x_bits)
        out = _cupy_bf16(cupy, np.full((p.tokens, p.hidden), G.BF16_NAN_BITS, np.uint16))
    s.synchronize()
    if which == "functional":
        _call(a, x, out, s)              # stream object with .ptr
    else:
        _layer_call(a, x, out, s.ptr)    # int handle
    s.synchronize()
    got = cupy.asnumpy(out.view(cupy.uint16))
    G.assert_bitwise_equal(got, baseline(), f"CuPy ({which})")


@requires_gpu
def test_cupy_cai_only():
    """CuPy arrays seen only through __cuda_array_interface__ (x and out: torch, see above)."""
    cupy = _cupy()
    p = prob()
    a = {k: CAIOnly(cupy.asarray(v)) for k, v in _host_arrays(p).items()}
    cupy.cuda.Device().synchronize()
    out = G.poisoned((p.tokens, p.hidden))
    _call(a, G.dev_bf16(p.x_bits), out, G.stream())
    G.sync()
    G.assert_bitwise_equal(G.bits(out), baseline(), "CuPy via CAI")


# ============================================================================================
# JAX
# ============================================================================================
@requires_gpu
def test_jax_arrays():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    try:
        gpu = jax.devices("gpu")[0]
    except Exception as e:
        pytest.skip(f"JAX has no GPU backend here: {e}")
    p = prob()
    a = {k: jax.device_put(jnp.asarray(v), gpu) for k, v in _host_arrays(p).items()}
    x = jax.lax.bitcast_convert_type(jax.device_put(jnp.asarray(p.x_bits), gpu), jnp.bfloat16)
    x = jax.device_put(x, gpu)
    for v in list(a.values()) + [x]:
        v.block_until_ready()
    import pymoe
    r = _call(a, x, None, G.stream())   # JAX arrays are immutable: out=None -> DeviceArray
    G.sync()
    assert isinstance(r, pymoe.DeviceArray), type(r)
    G.assert_bitwise_equal(G.bits(G.as_torch(r)), baseline(), "JAX (out=None)")
    # the result can go back into JAX too (DLPack)
    try:
        back = jnp.from_dlpack(r)
    except Exception as e:  # not every JAX accepts foreign DLPack producers; not pymoe's fault
        print(f"jnp.from_dlpack(DeviceArray) unavailable: {e}")
        return
    got = np.asarray(jax.lax.bitcast_convert_type(back, jnp.uint16))
    G.assert_bitwise_equal(got, baseline(), "JAX from_dlpack(DeviceArray)")


# ============================================================================================
# Numba
# ============================================================================================
@requires_gpu
def test_numba_device_arrays():
    numba = pytest.importorskip("numba")
    try:
        from numba import cuda
        if not cuda.is_available():
            pytest.skip("numba.cuda.is_available() is False")
    except Exception as e:
        pytest.skip(f"numba.cuda unusable: {e}")
    p = prob()
    s = cuda.stream()
    a = {k: cuda.to_device(np.ascontiguousarray(v), stream=s) for k, v in _host_arrays(p).items()}
    s.synchronize()
    for v in a.values():  # CAI v3 exported by Numba itself
        assert "data" in v.__cuda_array_interface__
    out = G.poisoned((p.tokens, p.hidden))
    _call(a, G.dev_bf16(p.x_bits), out, G.stream())
    G.sync()
    G.assert_bitwise_equal(G.bits(out), baseline(), f"Numba {numba.__version__} (CAI)")
