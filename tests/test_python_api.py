"""CPU tests of pymoe's array layer (no GPU needed; run after `pip install .`).

Producers are faked: objects with a __cuda_array_interface__ dict (aligned fake pointers, never
dereferenced), DLPack producers built with ctypes (versioned and legacy capsules with any device,
dtype, strides, byte_offset and flags, and a deleter that counts its calls), a ctypes
implementation of the DLPack C exchange API (`__dlpack_c_exchange_api__`), and NumPy arrays (real
CPU capsules). Every validation error must name the argument; calls whose arguments are all
valid must reach the library, which answers MoeError(NO_DEVICE) cleanly on this machine.
"""
import ctypes
import os
import subprocess
import sys
from ctypes import CFUNCTYPE, POINTER, Structure, c_int, c_int32, c_int64, c_uint8, c_uint16, c_uint32, c_uint64, \
    c_void_p, py_object

import numpy as np
import pytest

import pymoe

if pymoe._core is None:
    pytest.skip(f"pymoe extension not built: {pymoe._core_error}", allow_module_level=True)
_core = pymoe._core
# Tests that need the library to answer NO_DEVICE (valid calls with fake pointers must never reach
# a real GPU); everything else here only parses and validates, and runs on GPU machines too.
cpu_only = pytest.mark.skipif(pymoe.device_count() > 0, reason="needs a machine without GPU (fake pointers)")
BASE = 0x7F0000000000  # fake, well aligned device address
NO_DEVICE = "MOE12X_ERROR_NO_DEVICE"


# ============================================================================================
# Fake producers
# ============================================================================================
class FakeCuda:
    """A device array as far as __cuda_array_interface__ says; nothing is ever dereferenced."""

    def __init__(self, shape, typestr, offset=0, strides=None, readonly=False, stream=None, **extra):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                         "data": (BASE + offset, readonly), "version": 3,
                                         "strides": strides, "stream": stream, **extra}


class DLDevice(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    _fields_ = [("data", c_void_p), ("device", DLDevice), ("ndim", c_int32), ("dtype", DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


class DLPackVersion(Structure):
    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class DLManagedTensorVersioned(Structure):
    pass


class DLManagedTensor(Structure):
    pass


DELETER_V = CFUNCTYPE(None, POINTER(DLManagedTensorVersioned))
DELETER = CFUNCTYPE(None, POINTER(DLManagedTensor))
DLManagedTensorVersioned._fields_ = [("version", DLPackVersion), ("manager_ctx", c_void_p),
                                     ("deleter", DELETER_V), ("flags", c_uint64), ("dl_tensor", DLTensor)]
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", DELETER)]

_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = py_object
_PyCapsule_New.argtypes = [c_void_p, ctypes.c_char_p, c_void_p]
_NAME_V, _NAME, _NAME_API = b"dltensor_versioned", b"dltensor", b"dlpack_exchange_api"

# DLPack dtype codes
BF16_DL, F32_DL, I32_DL, I64_DL, U8_DL = (4, 16, 1), (2, 32, 1), (0, 32, 1), (0, 64, 1), (1, 8, 1)
E4M3FN_DL, E5M2_DL, FP4X2_DL, F16_DL = (10, 8, 1), (12, 8, 1), (17, 4, 2), (2, 16, 1)
CUDA, CPU, CUDA_HOST, CUDA_MANAGED = 2, 1, 3, 13


class FakeDL:
    """A DLPack producer (ctypes-made capsules). strides=None exports NULL strides (C order)."""

    def __init__(self, shape, dtype=BF16_DL, *, device=(CUDA, 0), offset=0, byte_offset=0, strides=None,
                 readonly=False, legacy_only=False, major=1):
        self.shape, self.dtype, self.device = tuple(shape), dtype, device
        self.ptr, self.byte_offset, self.strides = BASE + offset, byte_offset, strides
        self.readonly, self.legacy_only, self.major = readonly, legacy_only, major
        self.streams, self.capsules, self.deleted, self._keep = [], [], 0, []

    def _tensor(self):
        nd = len(self.shape)
        shp = (c_int64 * max(nd, 1))(*self.shape)
        st = None if self.strides is None else (c_int64 * max(nd, 1))(*self.strides)
        self._keep += [shp, st]
        return DLTensor(self.ptr, DLDevice(*self.device), nd, DLDataType(*self.dtype), shp,
                        st if st is not None else None, self.byte_offset)

    def _deleted(self, _m):
        self.deleted += 1

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        if self.legacy_only and max_version is not None:
            raise TypeError("__dlpack__() got an unexpected keyword argument 'max_version'")
        self.streams.append(stream)
        if max_version is not None and max_version[0] >= 1 and not self.legacy_only:
            d = DELETER_V(self._deleted)
            m = DLManagedTensorVersioned(DLPackVersion(self.major, 1), None, d, 1 if self.readonly else 0,
                                         self._tensor())
            cap = _PyCapsule_New(ctypes.addressof(m), _NAME_V, None)
        else:
            d = DELETER(self._deleted)
            m = DLManagedTensor(self._tensor(), None, d)
            cap = _PyCapsule_New(ctypes.addressof(m), _NAME, None)
        self._keep += [d, m]
        self.capsules.append(cap)
        return cap

    def __dlpack_device__(self):
        return self.device


# ---- a DLPack C exchange API (DLPack >= 1.2) implemented with ctypes -----------------------------------
FROM_PY = CFUNCTYPE(c_int, py_object, POINTER(DLTensor))
WORK_STREAM = CFUNCTYPE(c_int, c_int32, c_int32, POINTER(c_void_p))


class DLPackExchangeAPI(Structure):
    _fields_ = [("version", DLPackVersion), ("prev_api", c_void_p), ("managed_tensor_allocator", c_void_p),
                ("managed_tensor_from_py_object_no_sync", c_void_p),
                ("managed_tensor_to_py_object_no_sync", c_void_p),
                ("dltensor_from_py_object_no_sync", FROM_PY), ("current_work_stream", WORK_STREAM)]


_exchange_log = {"from_py": 0, "stream_queries": []}
_current_stream = {"value": 0}


def _from_py(obj, out):
    _exchange_log["from_py"] += 1
    t = obj._dl._tensor()
    ctypes.memmove(out, ctypes.byref(t), ctypes.sizeof(DLTensor))
    return 0


def _work_stream(dev_type, dev_id, out):
    _exchange_log["stream_queries"].append((dev_type, dev_id))
    out[0] = _current_stream["value"] or None
    return 0


_from_py_c, _work_stream_c = FROM_PY(_from_py), WORK_STREAM(_work_stream)
_api = DLPackExchangeAPI(DLPackVersion(1, 3), None, None, None, None, _from_py_c, _work_stream_c)


class ExchangeTensor:
    """Like a recent torch.Tensor: the type has __dlpack_c_exchange_api__, and __dlpack__ (the
    ordered fallback) is there too."""
    __dlpack_c_exchange_api__ = _PyCapsule_New(ctypes.addressof(_api), _NAME_API, None)

    def __init__(self, shape, dtype=BF16_DL, **kw):
        self._dl = FakeDL(shape, dtype, **kw)

    def __dlpack__(self, **kw):
        return self._dl.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._dl.device


# ============================================================================================
# Helpers
# ============================================================================================
BF16, F32, I32, I64, U8 = "<V2", "<f4", "<i4", "<i8", "|u1"
H, K = 256, 4


def arrays(T=3, **over):
    a = {"x": FakeCuda((T, H), BF16), "topk_ids": FakeCuda((T, K), I32), "topk_weights": FakeCuda((T, K), F32),
         "out": FakeCuda((T, H), BF16)}
    a.update(over)
    return a


def parse(stream=None, **kw):
    a = arrays(**kw)
    return _core._bench_parse(a["x"], a["topk_ids"], a["topk_weights"], a["out"], 1, H, K, stream)


def weights(E=4, H_=128, I=64, mk=None):
    mk = mk or (lambda shape, t: FakeCuda(shape, {"u8": U8, "f32": F32}[t]))
    return [mk((E, 2 * I, H_ // 2), "u8"), mk((E, 2 * I, H_ // 16), "u8"), mk((E,), "f32"),
            mk((E, H_, I // 2), "u8"), mk((E, H_, I // 16), "u8"), mk((E,), "f32")]


# ============================================================================================
# Module-level API
# ============================================================================================
def test_versions_and_device_count():
    major, minor, patch = (int(p) for p in pymoe.__version__.split(".")[:3])
    assert pymoe.library_version() == major * 10000 + minor * 100 + patch
    assert _core.header_version() == pymoe.library_version()
    assert isinstance(pymoe.device_count(), int)


@cpu_only
def test_device_count_is_zero_without_gpu():
    assert pymoe.device_count() == 0


def test_scale_bytes():
    assert pymoe.scale_bytes(200, 80, "row_major") == 200 * 5
    assert pymoe.scale_bytes(200, 80, "swizzled") == 256 * 8          # rows -> 256, 5 cols -> 8
    assert pymoe.scale_bytes(128, 64) == 128 * 4
    assert pymoe.scale_bytes(1, 16, "swizzled") == 128 * 4
    with pytest.raises(ValueError, match="layout"):
        pymoe.scale_bytes(2, 32, "bogus")
    with pytest.raises(pymoe.MoeError) as e:  # k not a multiple of 16: the library says why
        pymoe.scale_bytes(2, 40)
    assert isinstance(e.value, ValueError) and e.value.status_name == "MOE12X_ERROR_INVALID_ARGUMENT"


def test_include_and_library_paths():
    assert os.path.exists(os.path.join(pymoe.get_include(), "moe12x", "moe12x.h"))
    assert os.path.exists(pymoe.get_library())


COMPASS = {"qwen3-30b-a3b": (128, 8, 2048, 768), "qwen3-235b-a22b": (128, 8, 4096, 1536),
           "gpt-oss-120b": (128, 4, 2880, 2880), "deepseek-v3": (256, 8, 7168, 2048)}
_WS_SIZES = """
import json, sys, pymoe
S = json.loads(sys.argv[1])
print(json.dumps({n: [[pymoe.workspace_size(E, E, k, H, I, T), pymoe.select_schedule(E, E, k, H, I, T)] for T in S["T"]]
                  for n, (E, k, H, I) in S["shapes"].items()}))
"""


def _workspace_sizes(env: dict, ts) -> dict:
    """pymoe.workspace_size over the compass shapes in a child process (the modes are read once)."""
    import json
    arg = json.dumps({"T": list(ts), "shapes": COMPASS})
    r = subprocess.run([sys.executable, "-c", _WS_SIZES, arg], env=dict(os.environ, **env), capture_output=True,
                       text=True, timeout=120, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_workspace_size_grows_with_tokens_and_meets_the_prefill_bound():
    """Sizes never shrink as T grows (a workspace sized for max_tokens serves smaller calls), in
    both modes. With MOE12X_FC2_CHUNKS=1, from T = 512 (where the compass shapes run the wgmma
    kernels on bf16 activations) the workspace is <= 1.2 x (packed activations + intermediate),
    2 P (H + I) bytes, and smaller than without chunks; at decode sizes the modes agree."""
    ts = (1, 8, 64, 128, 256, 512, 1024, 2048, 4096, 16384)
    full = {n: [w for w, _ in v] for n, v in _workspace_sizes({"MOE12X_FC2_CHUNKS": "0"}, ts).items()}
    chunks = {n: [w for w, _ in v] for n, v in _workspace_sizes({"MOE12X_FC2_CHUNKS": "1"}, ts).items()}
    for name, (E, k, H, I) in COMPASS.items():
        for sizes in (full[name], chunks[name]):
            assert all(b >= a for a, b in zip(sizes, sizes[1:])), (name, sizes)
        for T, a, b in zip(ts, full[name], chunks[name]):
            P = T * k
            assert a >= 4 * P * H  # one pass: y holds every column
            if P <= 1024:
                assert a == b, (name, T)
            if T >= 512:
                packed = 2 * P * H + 2 * P * I
                assert b <= 1.2 * packed and b < a, (name, T, b / packed)
    assert pymoe.workspace_size(8, 8, 2, 256, 128, 0) > 0  # tables only
    with pytest.raises(pymoe.MoeError, match="hidden_size"):
        pymoe.workspace_size(8, 8, 2, 100, 128, 16)
    with pytest.raises(ValueError, match="act_quant"):
        pymoe.workspace_size(8, 8, 2, 256, 128, 16, act_quant="int4")


def test_auto_takes_the_decode_kernel_only_where_it_is_opted_in():
    """MOE12X_DECODE_KERNEL=1: AUTO picks the static schedule (the persistent decode kernel) for
    <= 256 routed pairs at a mean of <= 8 rows per expert, else dynamic; without it, always
    dynamic. Workspace sizes still grow with T across the switch."""
    ts = (1, 2, 4, 8, 16, 32, 33, 64, 128)
    off = _workspace_sizes({"MOE12X_DECODE_KERNEL": "0"}, ts)
    on = _workspace_sizes({"MOE12X_DECODE_KERNEL": "1"}, ts)
    for name, (E, k, H, I) in COMPASS.items():
        assert all(s == "dynamic" for _, s in off[name]), off[name]
        for T, (_, s) in zip(ts, on[name]):
            P = T * k
            mean = -(-P // min(P, E))
            assert s == ("static" if P <= 256 and mean <= 8 else "dynamic"), (name, T, s)
        sizes = [w for w, _ in on[name]]
        assert all(b >= a for a, b in zip(sizes, sizes[1:])), (name, sizes)


def test_workspace_cache_starts_empty_and_clears():
    pymoe.clear_workspace_cache()
    assert _core._workspace_cache_info() == {}


def test_moe_error_attributes():
    e = pymoe.MoeError(3, "detail")
    assert isinstance(e, RuntimeError) and e.status == 3 and e.status_name == NO_DEVICE
    assert str(e) == f"{NO_DEVICE}: detail"
    assert issubclass(pymoe.MoeValueError, pymoe.MoeError) and issubclass(pymoe.MoeValueError, ValueError)


def test_reference_imports_without_the_extension(tmp_path):
    """A source tree without _core: `import pymoe.reference` works; the compiled API raises a
    clear ImportError on use (unless an installed build is found and used instead)."""
    src = os.path.dirname(pymoe.__file__)
    dst = tmp_path / "pymoe"
    dst.mkdir()
    for f in ("__init__.py", "reference.py"):
        (dst / f).write_text(open(os.path.join(src, f)).read())
    code = ("import pymoe.reference as r, pymoe\n"
            "assert r.scale_bytes(128, 64, 'swizzled') == 512\n"
            "try:\n    pymoe.MoELayer\nexcept ImportError as e:\n    assert 'pip install' in str(e), e\n    print('no-ext')\n"
            "else:\n    assert pymoe._core is not None\n    print('installed-ext')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("no-ext", "installed-ext")


# ============================================================================================
# Validation of the per-call arrays (MoELayer.__call__ / fused_moe parse path)
# ============================================================================================
def test_valid_arrays_parse():
    assert parse() == 3
    assert parse(topk_ids=FakeCuda((3, K), I64), topk_weights=FakeCuda((3, K), BF16)) == 3
    # size-1 dimensions may carry any stride
    assert parse(T=1, x=FakeCuda((1, H), BF16, strides=(12345 * 2, 2))) == 1
    # empty batch: never read or written, so any strides and pointers pass
    assert parse(T=0) == 0
    assert parse(T=0, x=FakeCuda((0, H), BF16, offset=2, strides=(2, 2 * H)), out=FakeCuda((0, H), BF16, offset=6)) == 0
    with pytest.raises(ValueError, match="out: expected a writable array"):
        parse(T=0, out=FakeCuda((0, H), BF16, readonly=True))


@pytest.mark.parametrize("arg,bad,exc,words", [
    ("x", FakeCuda((3, H), F32), TypeError, "x: expected bfloat16, got float32"),
    ("x", FakeCuda((3, H), "<f2"), TypeError, "x: expected bfloat16, got float16"),
    ("topk_ids", FakeCuda((3, K), F32), TypeError, "topk_ids: expected int32 or int64, got float32"),
    ("topk_ids", FakeCuda((3, K), "<u4"), TypeError, "topk_ids: expected int32 or int64, got uint32"),
    ("topk_weights", FakeCuda((3, K), I32), TypeError, "topk_weights: expected float32 or bfloat16, got int32"),
    ("out", FakeCuda((3, H), F32), TypeError, "out: expected bfloat16"),
    ("x", FakeCuda((3, H + 64), BF16), ValueError, "x: expected shape [*, 256], got (3, 320)"),
    ("x", FakeCuda((3 * H,), BF16), ValueError, "x: expected 2 dimensions"),
    ("topk_ids", FakeCuda((4, K), I32), ValueError, "topk_ids: expected shape [3, 4], got (4, 4)"),
    ("topk_weights", FakeCuda((3, K + 1), F32), ValueError, "topk_weights: expected shape [3, 4]"),
    ("out", FakeCuda((2, H), BF16), ValueError, "out: expected shape [3, 256], got (2, 256)"),
    ("out", FakeCuda((3, H, 1), BF16), ValueError, "out: expected 2 dimensions"),
    ("x", FakeCuda((3, H), BF16, strides=(4 * H, 2)), ValueError, "x: expected a C-contiguous array, got strides"),
    ("x", FakeCuda((3, H), BF16, strides=(2, 6)), ValueError, "x: expected a C-contiguous array"),
    ("topk_ids", FakeCuda((3, K), I32, strides=(4, 12)), ValueError, "topk_ids: expected a C-contiguous array"),
    ("x", FakeCuda((3, H), BF16, strides=(2 * H, 3)), ValueError, "x: stride 3 bytes is not a multiple"),
    ("x", FakeCuda((3, H), BF16, offset=2), ValueError, "x: data pointer 0x7f0000000002 is not 16-byte aligned"),
    ("out", FakeCuda((3, H), BF16, offset=8), ValueError, "out: data pointer 0x7f0000000008 is not 16-byte aligned"),
    ("topk_ids", FakeCuda((3, K), I64, offset=4), ValueError, "topk_ids: data pointer 0x7f0000000004 is not 8-byte"),
    ("topk_weights", FakeCuda((3, K), F32, offset=2), ValueError, "topk_weights: data pointer"),
    ("out", FakeCuda((3, H), BF16, readonly=True), ValueError, "out: expected a writable array, got a read-only"),
    ("x", FakeCuda((3, H), BF16, mask=object()), ValueError, "x: masked arrays"),
    ("x", np.zeros((3, H), np.float32), ValueError, "x: expected a CUDA device array, got a CPU array (device type 1)"),
    ("out", np.zeros((3, H), np.uint16), ValueError, "out: expected a CUDA device array, got a CPU array"),
    ("topk_ids", [[1, 2, 3, 4]] * 3, TypeError, "topk_ids: expected a CUDA array (an object with __dlpack__"),
    ("topk_weights", None, TypeError, "topk_weights: expected a CUDA array"),
])
def test_bad_arrays_name_the_argument(arg, bad, exc, words):
    with pytest.raises(exc) as e:
        parse(**{arg: bad})
    assert words in str(e.value), str(e.value)


# ============================================================================================
# DLPack capsules
# ============================================================================================
def test_dlpack_versioned_capsule_is_parsed_used_and_deleted():
    x = FakeDL((3, H), BF16_DL, byte_offset=32)
    out = FakeDL((3, H), BF16_DL)
    a = arrays(x=x, out=out)
    assert _core._bench_parse(a["x"], a["topk_ids"], a["topk_weights"], a["out"], 1, H, K) == 3
    for p in (x, out):
        assert p.deleted == 1 and len(p.capsules) == 1
        assert '"used_dltensor_versioned"' in repr(p.capsules[0])
    d = _core._parse(x)
    assert d["ptr"] == BASE + 32                       # byte_offset honoured
    assert d["shape"] == (3, H) and d["strides"] == (H, 1)  # NULL strides = C-contiguous
    assert d["device"] == (CUDA, 0) and d["accepted"] == "bfloat16" and not d["readonly"]


def test_dlpack_legacy_fallback_when_max_version_is_unknown():
    x = FakeDL((3, H), BF16_DL, legacy_only=True)
    d = _core._parse(x)
    assert d["shape"] == (3, H) and x.deleted == 1 and '"used_dltensor"' in repr(x.capsules[0])


def test_dlpack_stream_argument():
    """__dlpack__(stream=...) follows the DLPack convention: 1 = legacy default (our 0)."""
    x = FakeDL((3, H))
    for ours, theirs in ((None, 1), (0, 1), (1, 1), (2, 2), (0x1234, 0x1234)):
        _core._parse(x, stream=ours)
        assert x.streams[-1] == theirs, (ours, x.streams)


def test_dlpack_checks():
    ok = dict(x=FakeDL((3, H)), topk_ids=FakeDL((3, K), I32_DL), topk_weights=FakeDL((3, K), F32_DL),
              out=FakeDL((3, H)))

    def run(**over):
        a = dict(ok, **over)
        return _core._bench_parse(a["x"], a["topk_ids"], a["topk_weights"], a["out"], 1, H, K)

    assert run() == 3
    assert run(topk_ids=FakeDL((3, K), I64_DL), topk_weights=FakeDL((3, K), BF16_DL)) == 3
    assert run(x=FakeDL((3, H), device=(CUDA_MANAGED, 0))) == 3
    assert run(x=FakeDL((3, H), strides=(H, 1)), out=FakeDL((3, H), strides=(H, 1))) == 3
    cases = [
        (dict(out=FakeDL((3, H), readonly=True)), ValueError, "out: expected a writable array, got a read-only"),
        (dict(x=FakeDL((3, H), device=(CPU, 0))), ValueError, "x: expected a CUDA device array, got a CPU array (device type 1)"),
        (dict(x=FakeDL((3, H), device=(CUDA_HOST, 0))), ValueError, "x: expected a CUDA device array, got pinned host"),
        (dict(out=FakeDL((3, H), device=(CUDA, 1))), ValueError, "out: on device 1, but x is on device 0"),
        (dict(topk_ids=FakeDL((3, K), I32_DL, device=(CUDA, 1))), ValueError, "topk_ids: on device 1"),
        (dict(x=FakeDL((3, H), F16_DL)), TypeError, "x: expected bfloat16, got float16"),
        (dict(topk_weights=FakeDL((3, K), (2, 32, 4))), TypeError, "topk_weights: expected float32 or bfloat16, got float32x4"),
        (dict(x=FakeDL((3, H), strides=(1, 3))), ValueError, "x: expected a C-contiguous array, got strides (1, 3)"),
        (dict(x=FakeDL((3, H), byte_offset=8)), ValueError, "x: data pointer 0x7f0000000008 is not 16-byte aligned"),
        (dict(x=FakeDL((3, H), major=2)), ValueError, "x: DLPack version 2.x is not supported"),
        (dict(x=FakeDL((3, 2, H))), ValueError, "x: expected 2 dimensions"),
        (dict(x=FakeDL((1, 1, 1, 1, 1))), ValueError, "x: expected at most 4 dimensions, got 5"),
    ]
    for over, exc, words in cases:
        with pytest.raises(exc) as e:
            run(**over)
        assert words in str(e.value), (words, str(e.value))
        for p in over.values():  # a rejected capsule is still released
            assert p.deleted == len(p.capsules) == 1, words


def test_fp8_and_fp4_byte_views():
    d = _core._parse(FakeDL((4, 128, 64), FP4X2_DL))
    assert d["accepted"] == "uint8" and d["shape"] == (4, 128, 64) and d["itemsize"] == 1
    assert d["dtype_name"] == "float4_e2m1fnx2"
    d = _core._parse(FakeDL((4, 128, 8), E4M3FN_DL))
    assert d["accepted"] == "uint8" and d["dtype_name"] == "float8_e4m3fn"
    d = _core._parse(FakeDL((4, 128, 8), E5M2_DL))
    assert d["accepted"] is None and d["dtype_name"] == "float8_e5m2"
    assert _core._parse(FakeCuda((4, 8), "|V1"))["accepted"] == "uint8"  # ml_dtypes fp8 via the CAI


def test_numpy_capsules_parse_and_release():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    rc = sys.getrefcount(a)
    d = _core._parse(a, allow_host=True)
    assert sys.getrefcount(a) == rc  # the deleter ran
    assert d["shape"] == (4, 6) and d["strides"] == (6, 1) and d["dtype"] == (2, 32, 1)
    assert d["device"] == (CPU, 0) and d["ptr"] == a.ctypes.data
    d = _core._parse(a.T, allow_host=True)
    assert d["shape"] == (6, 4) and d["strides"] == (1, 6)
    d = _core._parse(a[1:3, ::2], allow_host=True)
    assert d["shape"] == (2, 3) and d["strides"] == (6, 2) and d["ptr"] == a.ctypes.data + 6 * 4
    assert _core._parse(np.zeros((2, 3), np.int64), allow_host=True)["accepted"] == "int64"
    assert _core._parse(np.zeros(5, np.float16), allow_host=True)["dtype_name"] == "float16"
    ro = np.zeros(4, np.uint8)
    ro.flags.writeable = False
    assert _core._parse(ro, allow_host=True)["readonly"] is True
    with pytest.raises(ValueError, match="a: expected a CUDA device array, got a CPU array"):
        _core._parse(a)
    assert sys.getrefcount(a) == rc


# ============================================================================================
# DLPack C exchange API
# ============================================================================================
def test_exchange_api_fast_path_and_current_stream():
    assert _core._exchange_api_version(ExchangeTensor((1,))) == (1, 3)
    assert _core._exchange_api_version(FakeDL((1,))) is None
    _current_stream["value"] = 0x5000
    x, out = ExchangeTensor((3, H)), ExchangeTensor((3, H))
    ids, w = ExchangeTensor((3, K), I32_DL), ExchangeTensor((3, K), F32_DL)
    n0, q0 = _exchange_log["from_py"], len(_exchange_log["stream_queries"])
    d = _core._parse(x)
    assert d["stream"] == 0x5000 and d["shape"] == (3, H)  # stream=None: the producer's current stream
    assert not x._dl.streams                                # no __dlpack__ call
    assert _core._bench_parse(x, ids, w, out, 1, H, K) == 3
    assert _exchange_log["from_py"] - n0 == 5
    assert len(_exchange_log["stream_queries"]) - q0 == 2   # once per call, not per array
    assert _exchange_log["stream_queries"][-1] == (CUDA, 0)
    # an explicit stream equal to the producer's: still the fast path
    _core._bench_parse(x, ids, w, out, 1, H, K, 0x5000)
    assert not any(t._dl.streams for t in (x, ids, w, out))
    # a different explicit stream: the ordered __dlpack__(stream=...) path
    _core._bench_parse(x, ids, w, out, 1, H, K, 0x6000)
    assert all(t._dl.streams == [0x6000] for t in (x, ids, w, out))
    _current_stream["value"] = 0
    assert _core._parse(x)["stream"] == 0


def test_exchange_api_checks():
    _current_stream["value"] = 0
    with pytest.raises(ValueError, match="x: expected a CUDA device array, got a CPU array"):
        _core._bench_parse(ExchangeTensor((3, H), device=(CPU, 0)), None, None, None, 1, H, K)
    a = arrays(x=ExchangeTensor((3, H)), out=ExchangeTensor((3, H), device=(CUDA, 1)))
    with pytest.raises(ValueError, match="out: on device 1, but x is on device 0"):
        _core._bench_parse(a["x"], a["topk_ids"], a["topk_weights"], a["out"], 1, H, K)
    with pytest.raises(TypeError, match="x: expected bfloat16, got float32"):
        _core._bench_parse(ExchangeTensor((3, H), F32_DL), None, None, None, 1, H, K)


# ============================================================================================
# CUDA array interface streams
# ============================================================================================
def test_cai_streams():
    assert _core._parse(FakeCuda((2,), F32))["stream"] == 0                  # no stream: legacy default
    assert _core._parse(FakeCuda((2,), F32, stream=1))["stream"] == 0        # 1: legacy default
    assert _core._parse(FakeCuda((2,), F32, stream=2))["stream"] == 2        # per-thread default
    assert _core._parse(FakeCuda((2,), F32, stream=0xABC0))["stream"] == 0xABC0
    assert _core._parse(FakeCuda((2,), F32, stream=0xABC0), stream=0xABC0)["stream"] == 0xABC0
    # x's stream becomes the launch stream; the other arrays on it need no synchronization
    a = arrays(**{k: FakeCuda(v.__cuda_array_interface__["shape"], v.__cuda_array_interface__["typestr"],
                              stream=0xABC0) for k, v in arrays().items()})
    assert _core._bench_parse(a["x"], a["topk_ids"], a["topk_weights"], a["out"], 1, H, K) == 3


@cpu_only
def test_cai_foreign_stream_is_synchronized():
    a = arrays(**{k: FakeCuda(v.__cuda_array_interface__["shape"], v.__cuda_array_interface__["typestr"],
                              stream=0xABC0) for k, v in arrays().items()})
    # another producer stream than the launch stream: synchronized (here: no device -> MoeError)
    with pytest.raises(pymoe.MoeError, match="x: synchronizing the producer stream"):
        _core._bench_parse(a["x"], a["topk_ids"], a["topk_weights"], a["out"], 1, H, K, 0xDEF0)


# ============================================================================================
# Streams
# ============================================================================================
class CudaStreamProtocol:
    def __cuda_stream__(self):
        return (0, 0x1230)


class CupyLike:
    ptr = 0x4560


class TorchLike:
    cuda_stream = 0x7890


def test_stream_forms():
    x = FakeCuda((2,), F32)
    for s, want in ((None, 0), (0, 0), (7, 7), (CudaStreamProtocol(), 0x1230), (CupyLike(), 0x4560),
                    (TorchLike(), 0x7890)):
        assert _core._parse(x, stream=s)["stream"] == want
    for bad, exc, words in (("default", TypeError, "stream: expected None, an int handle"),
                            (1.5, TypeError, "stream: expected"), (True, TypeError, "stream: expected"),
                            (-3, ValueError, "stream: expected a non-negative handle")):
        with pytest.raises(exc, match=words):
            _core._parse(x, stream=bad)

    class BadProtocol:
        def __cuda_stream__(self):
            return 5

    with pytest.raises(TypeError, match="__cuda_stream__ must return"):
        _core._parse(x, stream=BadProtocol())


@cpu_only
def test_valid_stream_forms_reach_the_library():
    for s in (None, 0, 7, CudaStreamProtocol(), CupyLike(), TorchLike()):
        with pytest.raises(pymoe.MoeError) as e:
            pymoe.quantize_nvfp4(FakeCuda((4, 32), BF16), FakeCuda((1,), F32), FakeCuda((4, 16), U8),
                                 FakeCuda((4, 2), U8), stream=s)
        assert e.value.status_name == NO_DEVICE
    with pytest.raises(TypeError, match="stream"):
        pymoe.quantize_nvfp4(FakeCuda((4, 32), BF16), FakeCuda((1,), F32), FakeCuda((4, 16), U8),
                             FakeCuda((4, 2), U8), stream="default")


# ============================================================================================
# Quantizer
# ============================================================================================
def test_quantizer_validation():
    g = FakeCuda((1,), F32)
    q, s = FakeCuda((4, 16), U8), FakeCuda((4, 2), U8)
    cases = [
        ((FakeCuda((4, 40), BF16), g, FakeCuda((4, 20), U8), FakeCuda((4, 2), U8)), {}, ValueError, "x: cols = 40"),
        ((FakeCuda((4, 32), F32), g, q, s), {}, TypeError, "x: expected bfloat16, got float32"),
        ((FakeCuda((4, 32), BF16), g, q, FakeCuda((4, 3), U8)), {}, ValueError, "scale_out: expected 8 bytes"),
        ((FakeCuda((4, 32), BF16), g, q, FakeCuda((2, 4), U8)), {}, ValueError, "scale_out: expected shape [4, 2]"),
        ((FakeCuda((4, 32), BF16), g, FakeCuda((4, 8), U8), s), {}, ValueError, "q_out: expected shape [4, 16]"),
        ((FakeCuda((4, 32), BF16), g, FakeCuda((4, 16), U8, readonly=True), s), {}, ValueError, "q_out: expected a writable"),
        ((FakeCuda((4, 32), BF16), g, FakeCuda((4, 16), U8, offset=4), s), {}, ValueError, "q_out: data pointer"),
        ((FakeCuda((4, 32), BF16), FakeCuda((2,), F32), q, s), {}, ValueError, "global_scale: expected one float32"),
        ((FakeCuda((4, 32), BF16), FakeCuda((1,), BF16), q, s), {}, TypeError, "global_scale: expected float32"),
        ((FakeCuda((4, 32), BF16, strides=(2, 8)), g, q, s), {}, ValueError, "x: expected unit stride along columns"),
        ((FakeCuda((4, 32), BF16), g, q, s), {"scale_layout": "tiled"}, ValueError, "scale_layout"),
        ((FakeCuda((4, 32), BF16), g, q, FakeCuda((512,), U8)), {"scale_layout": "swizzled"}, None, None),
        ((FakeCuda((4, 32), BF16), g, q, FakeCuda((8,), U8)), {}, None, None),  # flat row-major scales
        ((FakeCuda((4, 32), BF16, strides=(128, 2)), g, q, s), {}, None, None),  # row stride > cols
    ]
    for args, kw, exc, words in cases:
        if exc is None:  # valid: reaches the library (only where there is no GPU: fake pointers)
            if pymoe.device_count() > 0:
                continue
            with pytest.raises(pymoe.MoeError) as e:
                pymoe.quantize_nvfp4(*args, **kw)
            assert e.value.status_name == NO_DEVICE
        else:
            with pytest.raises(exc) as e:
                pymoe.quantize_nvfp4(*args, **kw)
            assert words in str(e.value), (words, str(e.value))


# ============================================================================================
# Weights, layer, functional call
# ============================================================================================
@cpu_only
def test_prepare_weights_valid_reaches_the_library():
    for mk in (None, lambda shape, t: FakeDL(shape, {"u8": U8_DL, "f32": F32_DL}[t])):
        with pytest.raises(pymoe.MoeError) as e:
            pymoe.prepare_weights(*weights(mk=mk))
        assert e.value.status_name == NO_DEVICE and "no usable CUDA device" in str(e.value)
    # torch-style fp4 / fp8 dtypes of the same bytes
    w = weights(mk=lambda shape, t: FakeDL(shape, {"u8": U8_DL, "f32": F32_DL}[t]))
    w[0], w[3] = FakeDL(w[0].shape, FP4X2_DL), FakeDL(w[3].shape, FP4X2_DL)
    w[1], w[4] = FakeDL(w[1].shape, E4M3FN_DL), FakeDL(w[4].shape, E4M3FN_DL)
    with pytest.raises(pymoe.MoeError) as e:
        pymoe.prepare_weights(*w)
    assert e.value.status_name == NO_DEVICE
    # swizzled scales: scale_bytes(2I, H) and scale_bytes(H, I) bytes per expert, any shape
    w = weights()
    w[1], w[4] = FakeCuda((4, 1024), U8), FakeCuda((4, 8, 64), U8)
    with pytest.raises(pymoe.MoeError) as e:
        pymoe.prepare_weights(*w, scale_layout="swizzled")
    assert e.value.status_name == NO_DEVICE


def test_prepare_weights_validation():
    def bad(i, arr, exc, words, **kw):
        w = weights()
        if i is not None:
            w[i] = arr
        with pytest.raises(exc) as e:
            pymoe.prepare_weights(*w, **kw)
        assert words in str(e.value), (words, str(e.value))

    bad(3, FakeCuda((4, 128, 16), U8), ValueError, "w2: expected shape [4, 128, 32]")
    bad(0, FakeCuda((4, 127, 64), U8), ValueError, "w13: expected shape [E_local, 2*I, H/2] with an even")
    bad(0, FakeCuda((4, 128), U8), ValueError, "w13: expected 3 dimensions")
    bad(0, FakeCuda((4, 128, 64), I32), TypeError, "w13: expected uint8 (or float8_e4m3fn / float4_e2m1fn_x2 bytes), got int32")
    bad(1, FakeCuda((4, 128, 7), U8), ValueError, "w13_scale: expected shape [4, 128, 8]")
    bad(4, FakeDL((4, 128, 4), E5M2_DL), TypeError, "w2_scale: expected uint8 (or float8_e4m3fn / float4_e2m1fn_x2 bytes), got float8_e5m2")
    bad(2, FakeCuda((4,), BF16), TypeError, "w13_global_scale: expected float32, got bfloat16")
    bad(5, FakeCuda((3,), F32), ValueError, "w2_global_scale: expected shape [4]")
    bad(2, FakeCuda((4,), F32, offset=2), ValueError, "w13_global_scale: data pointer")
    bad(0, np.zeros((4, 128, 64), np.uint8), ValueError, "w13: expected a CUDA device array, got a CPU array")
    w = weights()
    w[0], w[3] = FakeDL((4, 128, 64), U8_DL, device=(CUDA, 0)), FakeDL((4, 128, 32), U8_DL, device=(CUDA, 1))
    with pytest.raises(ValueError, match=r"w2: on device 1, but w13 is on device 0"):
        pymoe.prepare_weights(*w)
    bad(None, None, ValueError, "gate_up_order", gate_up_order="gate-up")
    bad(None, None, ValueError, "scale_layout", scale_layout="col_major")
    bad(None, None, ValueError, "the local experts [1, 5) must lie in [0, 4)", local_expert_offset=1)
    bad(None, None, ValueError, "the local experts [0, 4) must lie in [0, 3)", num_experts=3)
    bad(1, FakeCuda((4, 1000), U8), ValueError, "w13_scale: swizzled scales need 4 x 1024 bytes", scale_layout="swizzled")
    # the library's own shape rule (H multiple of 64): a MoeError that is also a ValueError
    w = weights()
    w[0], w[1] = FakeCuda((4, 128, 60), U8), FakeCuda((4, 128, 7), U8)
    w[3], w[4] = FakeCuda((4, 120, 32), U8), FakeCuda((4, 120, 4), U8)
    with pytest.raises(pymoe.MoeError) as e:
        pymoe.prepare_weights(*w)
    assert "hidden_size = 120" in str(e.value) and isinstance(e.value, ValueError)
    assert e.value.status_name in ("MOE12X_ERROR_UNSUPPORTED_SHAPE", "MOE12X_ERROR_INVALID_ARGUMENT")


@cpu_only
def test_layer_construction_without_gpu_is_a_clean_error():
    s = FakeCuda((1,), F32)
    with pytest.raises(pymoe.MoeError) as e:
        pymoe.MoELayer(*weights(), s, s, top_k=2, max_tokens=8)
    assert e.value.status_name == NO_DEVICE


@pytest.mark.parametrize("kw,exc,words", [
    (dict(act_quant="fp8"), ValueError, "act_quant: expected one of ['none', 'nvfp4'], got 'fp8'"),
    (dict(schedule="fastest"), ValueError, "schedule: expected one of"),
    (dict(scale_layout="col"), ValueError, "scale_layout"),
    (dict(gate_up_order="gu"), ValueError, "gate_up_order"),
    (dict(top_k=0), ValueError, "top_k: expected 1..16, got 0"),
    (dict(top_k=17), ValueError, "top_k: expected 1..16, got 17"),
    (dict(max_tokens=-1), ValueError, "max_tokens: expected >= 0"),
    (dict(stream="s"), TypeError, "stream: expected"),
    (dict(fc2=None), ValueError, "fc2_input_scale: required"),
    (dict(fc1=None), ValueError, "fc1_input_scale: required for act_quant='nvfp4'"),
])
def test_layer_options_are_checked_before_any_device_work(kw, exc, words):
    args = dict(top_k=2, max_tokens=8)
    fc1, fc2 = kw.pop("fc1", FakeCuda((1,), F32)), kw.pop("fc2", FakeCuda((1,), F32))
    args.update(kw)
    with pytest.raises(exc) as e:
        pymoe.MoELayer(*weights(), fc1, fc2, **args)
    assert words in str(e.value), str(e.value)


def test_fused_moe_argument_checks():
    a = arrays()
    s = FakeCuda((1,), F32)
    with pytest.raises(TypeError, match="weights: expected a pymoe.PreparedWeights"):
        pymoe.fused_moe(a["x"], a["topk_ids"], a["topk_weights"], None, s, s, out=a["out"])
    with pytest.raises(TypeError):
        pymoe.fused_moe(a["x"], a["topk_ids"], a["topk_weights"], object(), s, s, out=a["out"])


# ============================================================================================
# DeviceArray (exporter) — exercised over borrowed fake memory
# ============================================================================================
def test_device_array_without_gpu():
    if pymoe.device_count() == 0:
        with pytest.raises(pymoe.MoeError) as e:
            pymoe.DeviceArray((2, 3))
        assert e.value.status_name == NO_DEVICE
    with pytest.raises(TypeError, match="dtype"):
        pymoe.DeviceArray((2, 3), "float16")
    with pytest.raises(ValueError, match="shape"):
        pymoe.DeviceArray((2, -3))


def test_device_array_exports():
    d = pymoe.DeviceArray._borrow(BASE, (3, H), "bfloat16", 0)
    assert d.shape == (3, H) and d.dtype == "bfloat16" and d.nbytes == 3 * H * 2 and d.ptr == BASE
    cai = d.__cuda_array_interface__
    assert cai["version"] == 3 and cai["typestr"] == "<V2" and cai["data"] == (BASE, False)
    assert cai["strides"] is None and cai["stream"] is None
    assert d.__dlpack_device__() == (CUDA, 0)
    rc = sys.getrefcount(d)
    for mv in (None, (1, 0), (1, 1)):
        cap = d.__dlpack__(max_version=mv)
        assert ('"dltensor_versioned"' if mv else '"dltensor"') in repr(cap)
        assert sys.getrefcount(d) == rc + 1
        del cap  # never consumed: the destructor releases it
        assert sys.getrefcount(d) == rc
    # round trip through pymoe's own ingestion (versioned capsule path)
    p = _core._parse(d, stream=5)
    assert p["shape"] == (3, H) and p["accepted"] == "bfloat16" and p["device"] == (CUDA, 0) and p["ptr"] == BASE
    assert sys.getrefcount(d) == rc
    with pytest.raises(BufferError):
        d.__dlpack__(dl_device=(CUDA, 1))
    with pytest.raises(BufferError):
        d.__dlpack__(copy=True)
    # a usable `out`: passes every check
    a = arrays(out=d)
    assert _core._bench_parse(a["x"], a["topk_ids"], a["topk_weights"], a["out"], 1, H, K) == 3
    for dt, ts in (("float32", "<f4"), ("int32", "<i4"), ("int64", "<i8"), ("uint8", "|u1")):
        e = pymoe.DeviceArray._borrow(BASE, (2, 2), dt)
        assert e.__cuda_array_interface__["typestr"] == ts and _core._parse(e)["accepted"] == dt
