# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""pymoe._core: array ingestion (DLPack C exchange API, DLPack capsules, CUDA array interface;
no framework imports), validation, and thin owners of device memory around the moe12x C ABI.

Every argument is parsed into a C struct (View) on the stack, checked, and only then is the
library called: a rejected call writes nothing and launches nothing.
"""
from cpython.pycapsule cimport (PyCapsule_GetName, PyCapsule_GetPointer, PyCapsule_IsValid,
                                PyCapsule_New, PyCapsule_SetName)
from cpython.object cimport Py_TYPE
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.stdint cimport int32_t, int64_t, intptr_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from moe12x cimport *

# ---- DLPack ABI (dlpack.h v1.3; the exchange API table is DLPack >= 1.2) ---------------------------
cdef extern from *:
    """
    typedef struct { int32_t device_type; int32_t device_id; } pymoe_DLDevice;
    typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } pymoe_DLDataType;
    typedef struct {
      void* data; pymoe_DLDevice device; int32_t ndim; pymoe_DLDataType dtype;
      int64_t* shape; int64_t* strides; uint64_t byte_offset;
    } pymoe_DLTensor;
    typedef struct pymoe_DLManagedTensor {
      pymoe_DLTensor dl_tensor; void* manager_ctx; void (*deleter)(struct pymoe_DLManagedTensor*);
    } pymoe_DLManagedTensor;
    typedef struct { uint32_t major; uint32_t minor; } pymoe_DLPackVersion;
    typedef struct pymoe_DLManagedTensorVersioned {
      pymoe_DLPackVersion version; void* manager_ctx;
      void (*deleter)(struct pymoe_DLManagedTensorVersioned*); uint64_t flags; pymoe_DLTensor dl_tensor;
    } pymoe_DLManagedTensorVersioned;
    /* DLPackExchangeAPI: DLPackExchangeAPIHeader {version, prev_api} followed by five function
       pointers, in this order (dlpack.h 1.2 and 1.3). The type attribute
       __dlpack_c_exchange_api__ is a PyCapsule named "dlpack_exchange_api" holding a pointer to
       it (early drafts: the pointer as an int). */
    typedef struct pymoe_DLPackExchangeAPI {
      pymoe_DLPackVersion version; void* prev_api;
      void* managed_tensor_allocator;
      int (*managed_tensor_from_py_object_no_sync)(void*, pymoe_DLManagedTensorVersioned**);
      void* managed_tensor_to_py_object_no_sync;
      int (*dltensor_from_py_object_no_sync)(void*, pymoe_DLTensor*);
      int (*current_work_stream)(int32_t, int32_t, void**);
    } pymoe_DLPackExchangeAPI;
    """
    ctypedef struct pymoe_DLDevice:
        int32_t device_type
        int32_t device_id
    ctypedef struct pymoe_DLDataType:
        uint8_t code
        uint8_t bits
        uint16_t lanes
    ctypedef struct pymoe_DLTensor:
        void* data
        pymoe_DLDevice device
        int32_t ndim
        pymoe_DLDataType dtype
        int64_t* shape
        int64_t* strides
        uint64_t byte_offset
    ctypedef struct pymoe_DLManagedTensor:
        pymoe_DLTensor dl_tensor
        void* manager_ctx
        void (*deleter)(pymoe_DLManagedTensor*)
    ctypedef struct pymoe_DLPackVersion:
        uint32_t major
        uint32_t minor
    ctypedef struct pymoe_DLManagedTensorVersioned:
        pymoe_DLPackVersion version
        void* manager_ctx
        void (*deleter)(pymoe_DLManagedTensorVersioned*)
        uint64_t flags
        pymoe_DLTensor dl_tensor
    ctypedef struct pymoe_DLPackExchangeAPI:
        pymoe_DLPackVersion version
        int (*managed_tensor_from_py_object_no_sync)(void*, pymoe_DLManagedTensorVersioned**)
        int (*dltensor_from_py_object_no_sync)(void*, pymoe_DLTensor*)
        int (*current_work_stream)(int32_t, int32_t, void**)

DEF MAXDIM = 4

cdef enum Dtype:  # the dtypes pymoe accepts
    BF16 = 0
    F32 = 1
    I32 = 2
    I64 = 3
    U8 = 4       # uint8, and the byte views of fp8 e4m3fn / torch's float4_e2m1fn_x2
    OTHER = 5

_DTYPE_NAMES = ("bfloat16", "float32", "int32", "int64", "uint8", "an unsupported dtype")
cdef int32_t kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13
cdef uint64_t kReadOnly = 1  # DLPACK_FLAG_BITMASK_READ_ONLY

cdef struct View:
    uintptr_t ptr          # data + byte_offset
    int ndim
    int64_t shape[MAXDIM]
    int64_t strides[MAXDIM]  # in elements
    int dtype              # Dtype
    int itemsize           # bytes per element (0 if unknown)
    uint8_t code           # DLPack type code / bits / lanes (from the typestr for the CAI)
    uint8_t bits
    uint16_t lanes
    int32_t dev_type
    int32_t dev_id         # -1: unknown (CUDA array interface)
    bint readonly


# Per-call stream state. `known`: the stream is decided (given by the caller, or taken from the
# first array: the DLPack exchange API's current work stream, a CAI v3 stream, else 0).
cdef struct Ctx:
    intptr_t stream        # canonical: 0 = legacy default, 2 = per-thread default, else a handle
    bint known
    void* api_ok           # an exchange API whose current stream on api_dev is `stream`
    int32_t api_dev
    bint synced            # a CAI producer stream was synchronized in this call ...
    intptr_t synced_stream  # ... this one


# ---- errors ---------------------------------------------------------------------------------------

class MoeError(RuntimeError):
    """A failure reported by libmoe12x. .status is the moe12x_status_t value, .status_name its
    name (e.g. "MOE12X_ERROR_NO_DEVICE"); the message carries moe12x_get_last_error()."""

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = moe12x_status_string(<moe12x_status_t>self.status).decode()
        super().__init__(f"{self.status_name}: {message}")

    def __reduce__(self):
        return (type(self), (self.status, str(self).partition(": ")[2]))


class MoeValueError(MoeError, ValueError):
    """The library rejected an argument (MOE12X_ERROR_INVALID_ARGUMENT or
    MOE12X_ERROR_UNSUPPORTED_SHAPE): both a MoeError and a ValueError."""


cdef int check(moe12x_status_t s, str what) except -1:
    if s == MOE12X_SUCCESS:
        return 0
    msg = moe12x_get_last_error().decode(errors="replace")
    cls = MoeValueError if (s == MOE12X_ERROR_INVALID_ARGUMENT or s == MOE12X_ERROR_UNSUPPORTED_SHAPE) \
        else MoeError
    raise cls(<int>s, f"{what}: {msg}" if msg else what)


# ---- dtypes ---------------------------------------------------------------------------------------

cdef int classify(uint8_t code, uint8_t bits, uint16_t lanes, int* itemsize) noexcept:
    itemsize[0] = 0
    if lanes == 1:
        if code == 4 and bits == 16:                      # kDLBfloat
            itemsize[0] = 2; return BF16
        if code == 2 and bits == 32:                      # kDLFloat
            itemsize[0] = 4; return F32
        if code == 0 and bits == 32:                      # kDLInt
            itemsize[0] = 4; return I32
        if code == 0 and bits == 64:
            itemsize[0] = 8; return I64
        if (code == 1 or code == 10) and bits == 8:       # kDLUInt, kDLFloat8_e4m3fn
            itemsize[0] = 1; return U8
    elif code == 17 and bits == 4 and lanes == 2:         # kDLFloat4_e2m1fn x2 (torch float4_e2m1fn_x2)
        itemsize[0] = 1; return U8
    if lanes > 0 and (bits * lanes) % 8 == 0:
        itemsize[0] = bits * lanes // 8
    return OTHER


_FP_NAMES = {7: "float8_e3m4", 8: "float8_e4m3", 9: "float8_e4m3b11fnuz", 10: "float8_e4m3fn",
             11: "float8_e4m3fnuz", 12: "float8_e5m2", 13: "float8_e5m2fnuz", 14: "float8_e8m0fnu",
             15: "float6_e2m3fn", 16: "float6_e3m2fn", 17: "float4_e2m1fn"}


cdef str dtype_name(View* v):
    """What the argument holds, for error messages."""
    code, bits, lanes = v.code, v.bits, v.lanes
    if code == 255:
        return "an unsupported dtype"
    if code in _FP_NAMES:
        name = _FP_NAMES[code]
    elif code == 4:
        name = f"bfloat{bits}"
    else:
        name = {0: "int", 1: "uint", 2: "float", 5: "complex", 6: "bool"}.get(code, f"dtype code {code} ") \
            + ("" if code == 6 else str(bits))
    return name if lanes == 1 else f"{name}x{lanes}"


# typestr -> (DLPack code, bits); "<V2" is bfloat16 (ml_dtypes / JAX), "|V1" a byte of fp8/fp4 data
cdef dict _TYPESTR = {"<f4": (2, 32), "<i4": (0, 32), "<i8": (0, 64), "|u1": (1, 8), "<u1": (1, 8),
                      "<V2": (4, 16), "|V2": (4, 16), "|V1": (1, 8), "<V1": (1, 8), "|i1": (0, 8),
                      "<f2": (2, 16), "<f8": (2, 64), "<u2": (1, 16), "<i2": (0, 16), "<u4": (1, 32),
                      "<u8": (1, 64), "|b1": (6, 8), "<c8": (5, 64), "<c16": (5, 128)}


# ---- parsing ----------------------------------------------------------------------------------------

cdef int view_from_dltensor(pymoe_DLTensor* t, View* v, str name) except -1:
    if t.ndim > MAXDIM or t.ndim < 0:
        raise ValueError(f"{name}: expected at most {MAXDIM} dimensions, got {t.ndim}")
    v.ndim = t.ndim
    v.code, v.bits, v.lanes = t.dtype.code, t.dtype.bits, t.dtype.lanes
    v.dtype = classify(t.dtype.code, t.dtype.bits, t.dtype.lanes, &v.itemsize)
    v.dev_type = t.device.device_type
    v.dev_id = t.device.device_id
    v.ptr = <uintptr_t>t.data + <uintptr_t>t.byte_offset
    cdef int i
    cdef int64_t expect = 1
    for i in range(t.ndim - 1, -1, -1):
        v.shape[i] = t.shape[i]
        v.strides[i] = expect if t.strides == NULL else t.strides[i]  # NULL: C-contiguous (< 1.2)
        expect *= t.shape[i]
    return 0


cdef int view_from_capsule(object cap, View* v, str name) except -1:
    """Parses a DLPack capsule, then marks it used and calls the deleter (we keep only the data
    pointer; the caller's reference to the producer object keeps the memory alive)."""
    cdef pymoe_DLManagedTensorVersioned* mv
    cdef pymoe_DLManagedTensor* m
    cdef uint32_t major
    if PyCapsule_IsValid(cap, b"dltensor_versioned"):
        mv = <pymoe_DLManagedTensorVersioned*>PyCapsule_GetPointer(cap, b"dltensor_versioned")
        PyCapsule_SetName(cap, b"used_dltensor_versioned")
        major = mv.version.major
        try:
            if major != 1:  # another ABI: only the deleter may be touched
                raise ValueError(f"{name}: DLPack version {major}.x is not supported (expected 1.x)")
            view_from_dltensor(&mv.dl_tensor, v, name)
            v.readonly = (mv.flags & kReadOnly) != 0
        finally:
            if mv.deleter != NULL:
                mv.deleter(mv)
        return 0
    if PyCapsule_IsValid(cap, b"dltensor"):
        m = <pymoe_DLManagedTensor*>PyCapsule_GetPointer(cap, b"dltensor")
        PyCapsule_SetName(cap, b"used_dltensor")
        try:
            view_from_dltensor(&m.dl_tensor, v, name)
            v.readonly = False
        finally:
            if m.deleter != NULL:
                m.deleter(m)
        return 0
    raise TypeError(f"{name}: __dlpack__ returned {type(cap).__name__}, not an unused DLPack capsule")


cdef int view_from_cai(object cai, View* v, str name) except -1:
    if not isinstance(cai, dict):
        raise TypeError(f"{name}: __cuda_array_interface__ is not a dict")
    shape = cai["shape"]
    cdef int nd = len(shape)
    if nd > MAXDIM:
        raise ValueError(f"{name}: expected at most {MAXDIM} dimensions, got {nd}")
    if cai.get("mask") is not None:
        raise ValueError(f"{name}: masked arrays (__cuda_array_interface__ 'mask') are not supported")
    data = cai["data"]
    v.ptr = <uintptr_t>(data[0] or 0)
    v.readonly = bool(data[1])
    typestr = cai["typestr"]
    dt = _TYPESTR.get(typestr)
    if dt is None:
        v.code, v.bits, v.lanes = 255, 0, 1
        v.dtype = OTHER
        try:
            v.itemsize = int(typestr[2:])
        except (ValueError, TypeError):
            v.itemsize = 0
    else:
        v.code, v.bits, v.lanes = dt[0], dt[1], 1
        v.dtype = classify(v.code, v.bits, 1, &v.itemsize)
    v.ndim = nd
    v.dev_type = kDLCUDA
    v.dev_id = -1  # the interface does not say
    strides = cai.get("strides")
    cdef int i
    cdef int64_t expect = 1, sb
    for i in range(nd - 1, -1, -1):
        v.shape[i] = shape[i]
        if strides is None:
            v.strides[i] = expect
        else:
            sb = strides[i]
            if v.itemsize == 0 or sb % v.itemsize:
                raise ValueError(f"{name}: stride {sb} bytes is not a multiple of the item size")
            v.strides[i] = sb // v.itemsize
        expect *= v.shape[i]
    return 0


cdef inline intptr_t canon(intptr_t s) noexcept:
    return 0 if s == 1 else s  # 1 (cudaStreamLegacy / the protocols' "legacy default") == 0


cdef inline intptr_t dl_stream(intptr_t s) noexcept:
    return 1 if s == 0 else s  # DLPack: 1 = legacy default stream (0 is not allowed)


# type -> DLPackExchangeAPI* as an int (0: none); the dict keeps the types alive, so the one-entry
# cache (_last_type, _last_api) can compare pointers.
cdef dict _exchange_apis = {}
cdef PyObject* _last_type = NULL
cdef pymoe_DLPackExchangeAPI* _last_api = NULL


cdef pymoe_DLPackExchangeAPI* exchange_api(object obj) except? NULL:
    global _last_type, _last_api
    cdef PyObject* tp = <PyObject*>Py_TYPE(obj)
    if tp == _last_type:
        return _last_api
    cdef object key = type(obj)
    cdef object hit = _exchange_apis.get(key)
    cdef pymoe_DLPackExchangeAPI* api = NULL
    if hit is None:
        hit = 0
        cap = getattr(key, "__dlpack_c_exchange_api__", None)
        if cap is not None:
            if PyCapsule_IsValid(cap, b"dlpack_exchange_api"):
                api = <pymoe_DLPackExchangeAPI*>PyCapsule_GetPointer(cap, b"dlpack_exchange_api")
            elif isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
                api = <pymoe_DLPackExchangeAPI*><uintptr_t>cap
            # major 1 (same table layout), minor >= 2 (the table exists), a usable entry point
            if api != NULL and not (api.version.major == 1 and api.version.minor >= 2
                                    and api.current_work_stream != NULL
                                    and (api.dltensor_from_py_object_no_sync != NULL
                                         or api.managed_tensor_from_py_object_no_sync != NULL)):
                api = NULL
            if api != NULL:
                hit = <uintptr_t>api
        _exchange_apis[key] = hit
    _last_type = tp
    _last_api = <pymoe_DLPackExchangeAPI*><uintptr_t>hit
    return _last_api


cdef int reject_device(View* v, str name) except -1:
    if v.dev_type == kDLCUDA or v.dev_type == kDLCUDAManaged:
        return 0
    if v.dev_type == kDLCPU:
        raise ValueError(f"{name}: expected a CUDA device array, got a CPU array (device type 1)")
    if v.dev_type == kDLCUDAHost:
        raise ValueError(f"{name}: expected a CUDA device array, got pinned host memory (device type 3)")
    raise ValueError(f"{name}: expected a CUDA device array, got device type {v.dev_type}")


cdef int dlpack_failed(object obj, str name, object err) except -1:
    try:
        dev = obj.__dlpack_device__()
    except Exception:
        dev = None
    if dev is not None and len(dev) == 2 and dev[0] == kDLCPU:
        raise ValueError(f"{name}: expected a CUDA device array, got a CPU array (device type 1)") from None
    raise ValueError(f"{name}: __dlpack__ failed: {type(err).__name__}: {err}") from err


cdef int ingest(object obj, str name, Ctx* c, View* v) except -1:
    """Fills v from obj and, for the first array of a call without an explicit stream, decides
    the stream. Order: the DLPack C exchange API (no Python call; valid when the producer's
    current stream is the launch stream, else we fall back to the ordered path), __dlpack__
    (passing our stream so the producer orders its pending work before it), then
    __cuda_array_interface__ (a v3 producer stream other than ours is synchronized once)."""
    cdef pymoe_DLTensor t
    cdef pymoe_DLManagedTensorVersioned* mv = NULL
    cdef void* cur = NULL
    cdef object cap
    v.readonly = False
    cdef pymoe_DLPackExchangeAPI* api = exchange_api(obj)
    if api != NULL:
        if api.dltensor_from_py_object_no_sync != NULL:
            if api.dltensor_from_py_object_no_sync(<void*>obj, &t) != 0:
                return -1  # the producer set a Python exception
            view_from_dltensor(&t, v, name)
        else:
            if api.managed_tensor_from_py_object_no_sync(<void*>obj, &mv) != 0:
                return -1
            try:
                view_from_dltensor(&mv.dl_tensor, v, name)
                v.readonly = (mv.flags & kReadOnly) != 0
            finally:
                if mv.deleter != NULL:
                    mv.deleter(mv)
        reject_device(v, name)
        if c.known and c.api_ok == <void*>api and c.api_dev == v.dev_id:
            return 0
        if api.current_work_stream(v.dev_type, v.dev_id, &cur) != 0:
            return -1
        if not c.known:
            c.stream, c.known = canon(<intptr_t>cur), True
        if canon(<intptr_t>cur) == c.stream:
            c.api_ok, c.api_dev = <void*>api, v.dev_id
            return 0
        # the producer's current stream is not ours: take the ordered __dlpack__ path below
    dl = getattr(obj, "__dlpack__", None)
    if dl is not None:
        if not c.known:
            c.stream, c.known = 0, True
        try:
            cap = dl(stream=dl_stream(c.stream), max_version=(1, 1))
        except TypeError as e:  # a producer that predates max_version: legacy capsule
            try:
                cap = dl(stream=dl_stream(c.stream))
            except Exception as e2:
                dlpack_failed(obj, name, e2)
        except Exception as e:
            dlpack_failed(obj, name, e)
        view_from_capsule(cap, v, name)
        reject_device(v, name)
        return 0
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is None:
        raise TypeError(f"{name}: expected a CUDA array (an object with __dlpack__ or "
                        f"__cuda_array_interface__), got {type(obj).__name__}")
    view_from_cai(cai, v, name)
    producer = cai.get("stream")  # v3: None = nothing to order; 1 legacy, 2 per-thread, else a handle
    cdef intptr_t ps
    if producer is None:
        if not c.known:
            c.stream, c.known = 0, True
    else:
        ps = canon(<intptr_t>producer)
        if not c.known:
            c.stream, c.known = ps, True
        elif ps != c.stream and not (c.synced and c.synced_stream == ps):
            check(moe12x_stream_synchronize(<moe12x_stream_t>ps), f"{name}: synchronizing the producer stream")
            c.synced, c.synced_stream = True, ps
    return 0


cdef inline int ctx_init(Ctx* c, object stream) except -1:
    memset(c, 0, sizeof(Ctx))
    if stream is not None:
        c.stream = canon(resolve_stream(stream))
        c.known = True
    return 0


cdef intptr_t resolve_stream(object stream) except? -1:
    """An int handle, an object with __cuda_stream__() -> (version, handle), or an object with an
    int .cuda_stream (torch) / .ptr (CuPy) / .handle attribute."""
    cdef object h = None
    if isinstance(stream, int) and not isinstance(stream, bool):
        h = stream
    else:
        cs = getattr(stream, "__cuda_stream__", None)
        if cs is not None:
            pair = cs() if callable(cs) else cs
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TypeError(f"stream: __cuda_stream__ must return (version, handle), got {pair!r}")
            h = pair[1]
        else:
            for attr in ("cuda_stream", "ptr", "handle"):
                h = getattr(stream, attr, None)
                if isinstance(h, int) and not isinstance(h, bool):
                    break
                h = None
        if h is None or not isinstance(h, int):
            raise TypeError(f"stream: expected None, an int handle, or an object with __cuda_stream__ "
                            f"/ .cuda_stream / .ptr, got {type(stream).__name__}")
    if h < 0:
        raise ValueError(f"stream: expected a non-negative handle, got {h}")
    return <intptr_t>h


# ---- checks -------------------------------------------------------------------------------------

cdef str shape_str(tuple shape):
    return "[" + ", ".join("*" if s < 0 else str(s) for s in shape) + "]"


cdef tuple view_shape(View* v):
    return tuple([v.shape[i] for i in range(v.ndim)])


cdef int64_t numel(View* v) noexcept:
    cdef int64_t n = 1
    cdef int i
    for i in range(v.ndim):
        n *= v.shape[i]
    return n


cdef int check_dtype(View* v, str name, int dtype) except -1:
    if v.dtype != dtype:
        want = _DTYPE_NAMES[dtype] + (" (or float8_e4m3fn / float4_e2m1fn_x2 bytes)" if dtype == U8 else "")
        raise TypeError(f"{name}: expected {want}, got {dtype_name(v)}")
    return 0


cdef int check_layout(View* v, str name, int align, bint writable) except -1:
    """C-contiguous (size-1 dims may carry any stride), aligned, writable for outputs. An empty
    array is never read or written: any strides and pointer will do."""
    cdef int i
    cdef int64_t want = 1
    if writable and v.readonly:
        raise ValueError(f"{name}: expected a writable array, got a read-only one")
    for i in range(v.ndim):
        if v.shape[i] == 0:
            return 0
    for i in range(v.ndim - 1, -1, -1):
        if v.shape[i] != 1 and v.strides[i] != want:
            raise ValueError(f"{name}: expected a C-contiguous array, got strides "
                             f"{tuple([v.strides[j] for j in range(v.ndim)])} (elements) for shape {view_shape(v)}")
        want *= v.shape[i]
    if align > 1 and v.ptr % <uintptr_t>align:
        raise ValueError(f"{name}: data pointer {v.ptr:#x} is not {align}-byte aligned")
    return 0


cdef int check_shape(View* v, str name, tuple shape) except -1:
    """shape entries < 0 match any size."""
    cdef int i
    if v.ndim != len(shape):
        raise ValueError(f"{name}: expected {len(shape)} dimensions {shape_str(shape)}, got shape {view_shape(v)}")
    for i in range(v.ndim):
        if shape[i] >= 0 and v.shape[i] != shape[i]:
            raise ValueError(f"{name}: expected shape {shape_str(shape)}, got {view_shape(v)}")
    return 0


cdef inline int check2(View* v, str name, int64_t d0, int64_t d1) except -1:
    """Hot-path 2-D shape check (d < 0 matches any size) without building Python objects."""
    if v.ndim != 2 or (d0 >= 0 and v.shape[0] != d0) or (d1 >= 0 and v.shape[1] != d1):
        check_shape(v, name, (d0, d1))
    return 0


cdef int expect(View* v, str name, int dtype, tuple shape, int align, bint writable=False) except -1:
    """dtype (< 0: any), shape (None: any; entries < 0 match any size), layout."""
    if dtype >= 0:
        check_dtype(v, name, dtype)
    if shape is not None:
        check_shape(v, name, shape)
    check_layout(v, name, align, writable)
    return 0


cdef dict _ACT = {"nvfp4": 0, "none": 1}
cdef dict _ORDER = {"up_gate": 0, "gate_up": 1}
cdef dict _LAYOUT = {"row_major": 0, "swizzled": 1}
cdef dict _SCHED = {"auto": 0, "static": 1, "dynamic": 2}
_SCHED_NAMES = ("auto", "static", "dynamic")


cdef int option(dict table, object value, str name) except -1:
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"{name}: expected one of {sorted(table)}, got {value!r}") from None


# ---- module functions ---------------------------------------------------------------------------------

def library_version():
    """moe12x_get_version() of the loaded library (major*10000 + minor*100 + patch)."""
    return moe12x_get_version()


def header_version():
    """MOE12X_VERSION of the header this extension was compiled against."""
    return MOE12X_VERSION


def device_count():
    """Number of CUDA devices; 0 without a driver or GPU (never raises)."""
    cdef int n = 0
    if moe12x_device_count(&n) != MOE12X_SUCCESS:
        return 0
    return n


def scale_bytes(int64_t rows, int64_t k, layout="row_major"):
    """Bytes of one block-scale tensor of rows x k values (k/16 scales per row) in `layout`."""
    cdef size_t b = 0
    check(moe12x_scale_bytes(rows, k, option(_LAYOUT, layout, "layout"), &b), "scale_bytes")
    return b


cdef moe12x_config_t _shape_config(int num_experts, int num_local_experts, int top_k, int hidden_size,
                                   int intermediate_size, int64_t num_tokens, act_quant, schedule) except *:
    """A config of the shape fields alone (the size and schedule queries need no weights)."""
    cdef moe12x_config_t cfg
    moe12x_config_init(&cfg)
    cfg.num_experts, cfg.num_local_experts = num_experts, num_local_experts
    cfg.hidden_size, cfg.intermediate_size, cfg.top_k = hidden_size, intermediate_size, top_k
    cfg.max_tokens = num_tokens
    cfg.act_quant = option(_ACT, act_quant, "act_quant")
    cfg.schedule = option(_SCHED, schedule, "schedule")
    return cfg


def select_schedule(int num_experts, int num_local_experts, int top_k, int hidden_size,
                    int intermediate_size, int64_t num_tokens, schedule="auto"):
    """The schedule ("static" / "dynamic") the library runs for this shape and T."""
    cdef moe12x_config_t cfg = _shape_config(num_experts, num_local_experts, top_k, hidden_size,
                                             intermediate_size, num_tokens, "nvfp4", schedule)
    cdef int32_t s = 0
    check(moe12x_select_schedule(&cfg, num_tokens, &s), "select_schedule")
    return _SCHED_NAMES[s]


def workspace_size(int num_experts, int num_local_experts, int top_k, int hidden_size,
                   int intermediate_size, int64_t num_tokens, act_quant="nvfp4", schedule="auto"):
    """Bytes of the smallest workspace for calls of up to num_tokens tokens (moe12x_workspace_size:
    what MoELayer(max_tokens=num_tokens) allocates; no device is needed)."""
    cdef moe12x_config_t cfg = _shape_config(num_experts, num_local_experts, top_k, hidden_size,
                                             intermediate_size, num_tokens, act_quant, schedule)
    cdef size_t nbytes = 0
    check(moe12x_workspace_size(&cfg, num_tokens, &nbytes), "workspace_size")
    return nbytes


# ---- device memory ------------------------------------------------------------------------------------

cdef class DeviceBuffer:
    """Raw device memory owned by pymoe (moe12x_device_malloc; freed by close() or collection).
    device -1 = the current device at allocation time."""
    cdef readonly uintptr_t ptr
    cdef readonly size_t nbytes
    cdef readonly int device
    cdef bint owned

    def __cinit__(self, size_t nbytes, int device=-1, bint _alloc=True):
        cdef void* p = NULL
        self.device = device
        if not _alloc:  # _borrowed_buffer fills the fields
            return
        check(moe12x_device_malloc(device, nbytes, &p), f"allocating {nbytes} bytes of device memory")
        self.ptr = <uintptr_t>p
        self.nbytes = nbytes
        self.owned = True

    def close(self):
        """Frees the memory now (cudaFree waits for work still using it)."""
        if self.ptr and self.owned:
            moe12x_device_free(self.device, <void*>self.ptr)
        self.ptr = 0

    def __dealloc__(self):
        if self.ptr and self.owned:
            moe12x_device_free(self.device, <void*>self.ptr)

    def __repr__(self):
        return f"DeviceBuffer(ptr={self.ptr:#x}, nbytes={self.nbytes}, device={self.device})"


cdef DeviceBuffer _borrowed_buffer(uintptr_t ptr, size_t nbytes, int device):
    """A DeviceBuffer over memory pymoe does not own (tests: exercises the exporters off-GPU)."""
    cdef DeviceBuffer b = DeviceBuffer.__new__(DeviceBuffer, 0, device, False)
    b.ptr, b.nbytes, b.device, b.owned = ptr, nbytes, device, False
    return b


cdef void _dl_deleter(pymoe_DLManagedTensor* m) noexcept with gil:
    if m.manager_ctx != NULL:
        Py_DECREF(<object>m.manager_ctx)
    free(m)


cdef void _dl_deleter_v(pymoe_DLManagedTensorVersioned* m) noexcept with gil:
    if m.manager_ctx != NULL:
        Py_DECREF(<object>m.manager_ctx)
    free(m)


cdef void _dl_capsule_destructor(object cap) noexcept:
    cdef pymoe_DLManagedTensor* m
    if PyCapsule_IsValid(cap, b"dltensor"):  # never consumed
        m = <pymoe_DLManagedTensor*>PyCapsule_GetPointer(cap, b"dltensor")
        m.deleter(m)


cdef void _dl_capsule_destructor_v(object cap) noexcept:
    cdef pymoe_DLManagedTensorVersioned* m
    if PyCapsule_IsValid(cap, b"dltensor_versioned"):  # never consumed
        m = <pymoe_DLManagedTensorVersioned*>PyCapsule_GetPointer(cap, b"dltensor_versioned")
        m.deleter(m)


cdef void dl_code(int dt, pymoe_DLDataType* t) noexcept:
    t.lanes = 1
    if dt == BF16:
        t.code, t.bits = 4, 16
    elif dt == F32:
        t.code, t.bits = 2, 32
    elif dt == I32:
        t.code, t.bits = 0, 32
    elif dt == I64:
        t.code, t.bits = 0, 64
    else:
        t.code, t.bits = 1, 8


_TYPESTR_OUT = {BF16: "<V2", F32: "<f4", I32: "<i4", I64: "<i8", U8: "|u1"}
_NAME_TO_DTYPE = {"bfloat16": BF16, "float32": F32, "int32": I32, "int64": I64, "uint8": U8}
_ITEMSIZE = {BF16: 2, F32: 4, I32: 4, I64: 8, U8: 1}


cdef class DeviceArray:
    """A C-contiguous device array owned by pymoe (what fused_moe(out=None) returns). It exposes
    __cuda_array_interface__ (v3) and __dlpack__ / __dlpack_device__ (legacy and versioned
    capsules), so torch.from_dlpack / torch.as_tensor / cupy.asarray / jax.dlpack view it without
    a copy. dtype: "bfloat16", "float32", "int32", "int64" or "uint8". device -1 = the current
    device (reported as 0 by __dlpack_device__: pass the ordinal when it is not 0).

    Pending work: the array remembers the stream of the pymoe call that wrote it; a consumer on
    another stream (__dlpack__(stream=...), or a CAI v3 consumer seeing "stream") waits for it."""
    cdef readonly DeviceBuffer buffer
    cdef readonly tuple shape
    cdef readonly str dtype
    cdef int _dt
    cdef bint _pending
    cdef intptr_t _stream

    def __init__(self, shape, dtype="bfloat16", int device=-1):
        self._setup(shape, dtype)
        self.buffer = DeviceBuffer(max(self.nbytes, 1), device)

    cdef _setup(self, shape, dtype):
        self.shape = tuple([int(s) for s in shape])
        if len(self.shape) > MAXDIM or any(s < 0 for s in self.shape):
            raise ValueError(f"shape: expected at most {MAXDIM} non-negative sizes, got {self.shape}")
        if dtype not in _NAME_TO_DTYPE:
            raise TypeError(f"dtype: expected one of {sorted(_NAME_TO_DTYPE)}, got {dtype!r}")
        self.dtype = dtype
        self._dt = _NAME_TO_DTYPE[dtype]

    @staticmethod
    def _borrow(uintptr_t ptr, shape, dtype="bfloat16", int device=0):
        """A DeviceArray over foreign memory (never freed by pymoe). For tests and tools."""
        cdef DeviceArray a = DeviceArray.__new__(DeviceArray)
        a._setup(shape, dtype)
        a.buffer = _borrowed_buffer(ptr, a.nbytes, device)
        return a

    cdef void _written_on(self, intptr_t stream) noexcept:
        self._pending, self._stream = True, stream

    @property
    def ptr(self):
        return self.buffer.ptr

    @property
    def device(self):
        return self.buffer.device

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def itemsize(self):
        return _ITEMSIZE[self._dt]

    @property
    def nbytes(self):
        return self.size * _ITEMSIZE[self._dt]

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d DeviceArray")
        return self.shape[0]

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype!r}, device={self.buffer.device}, ptr={self.buffer.ptr:#x})"

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": _TYPESTR_OUT[self._dt], "data": (self.buffer.ptr, False),
                "version": 3, "strides": None,
                "stream": (dl_stream(self._stream) if self._pending else None)}

    def __dlpack_device__(self):
        cdef int dev = self.buffer.device
        return (kDLCUDA, dev if dev >= 0 else 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError(f"DeviceArray lives on {self.__dlpack_device__()}, cannot export to {dl_device}")
        if copy:
            raise BufferError("DeviceArray cannot export a copy (copy=True)")
        cdef intptr_t consumer
        if stream is not None and not isinstance(stream, int):
            raise TypeError(f"stream: expected an int or None, got {type(stream).__name__}")
        if stream != -1 and self._pending:  # -1: the consumer orders the work itself
            consumer = 0 if stream is None else canon(<intptr_t>stream)
            if consumer != canon(self._stream):
                check(moe12x_stream_synchronize(<moe12x_stream_t>self._stream), "DeviceArray.__dlpack__")
                self._pending = False  # the work is done: nothing left to order
        cdef bint versioned = max_version is not None and max_version[0] >= 1
        cdef int nd = len(self.shape)
        cdef size_t head = sizeof(pymoe_DLManagedTensorVersioned) if versioned else sizeof(pymoe_DLManagedTensor)
        cdef char* mem = <char*>malloc(head + 2 * sizeof(int64_t) * (nd if nd > 0 else 1))
        if mem == NULL:
            raise MemoryError()
        cdef int64_t* shp = <int64_t*>(mem + head)
        cdef int64_t* strd = shp + nd
        cdef int64_t acc = 1
        cdef int i
        for i in range(nd - 1, -1, -1):
            shp[i] = self.shape[i]
            strd[i] = acc
            acc *= self.shape[i]
        cdef pymoe_DLTensor* t
        cdef pymoe_DLManagedTensorVersioned* mv
        cdef pymoe_DLManagedTensor* m
        if versioned:
            mv = <pymoe_DLManagedTensorVersioned*>mem
            mv.version.major, mv.version.minor = 1, 1
            mv.flags = 0
            mv.manager_ctx = <void*>self
            mv.deleter = _dl_deleter_v
            t = &mv.dl_tensor
        else:
            m = <pymoe_DLManagedTensor*>mem
            m.manager_ctx = <void*>self
            m.deleter = _dl_deleter
            t = &m.dl_tensor
        t.data = <void*>self.buffer.ptr
        t.device.device_type = kDLCUDA
        t.device.device_id = self.buffer.device if self.buffer.device >= 0 else 0
        t.ndim = nd
        dl_code(self._dt, &t.dtype)
        t.shape = shp
        t.strides = strd
        t.byte_offset = 0
        Py_INCREF(self)
        if versioned:
            return PyCapsule_New(mem, b"dltensor_versioned", _dl_capsule_destructor_v)
        return PyCapsule_New(mem, b"dltensor", _dl_capsule_destructor)


# ---- weights ---------------------------------------------------------------------------------------

cdef int common_device(View** vs, int n, tuple names) except -2:
    """The device id the arrays share (-1 if none says), or ValueError naming the odd one."""
    cdef int dev = -1, first = 0, i
    for i in range(n):
        if vs[i].dev_id >= 0:
            if dev < 0:
                dev, first = vs[i].dev_id, i
            elif vs[i].dev_id != dev:
                raise ValueError(f"{names[i]}: on device {vs[i].dev_id}, but {names[first]} is on device {dev}")
    return dev


cdef class PreparedWeights:
    """Weights of the local experts in the library's layout (device memory owned here, freed by
    close() or collection). Built by pymoe.prepare_weights; shared by any number of MoELayers."""
    cdef moe12x_config_t cfg
    cdef readonly DeviceBuffer buffer
    cdef readonly int num_experts, num_local_experts, local_expert_offset, hidden_size, intermediate_size
    cdef readonly int device

    def __init__(self, w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale, *,
                 num_experts=None, int local_expert_offset=0, scale_layout="row_major",
                 gate_up_order="up_gate", stream=None):
        cdef int lay = option(_LAYOUT, scale_layout, "scale_layout")
        cdef int order = option(_ORDER, gate_up_order, "gate_up_order")
        cdef View a, b, c, d, e, f
        cdef Ctx ctx
        ctx_init(&ctx, stream)
        ingest(w13, "w13", &ctx, &a)
        check_dtype(&a, "w13", U8)
        if a.ndim != 3:
            raise ValueError(f"w13: expected 3 dimensions [E_local, 2*I, H/2], got shape {view_shape(&a)}")
        cdef int64_t E = a.shape[0], I2 = a.shape[1], H = a.shape[2] * 2
        if I2 % 2:
            raise ValueError(f"w13: expected shape [E_local, 2*I, H/2] with an even second dimension, "
                             f"got {view_shape(&a)}")
        check_layout(&a, "w13", 1, False)
        cdef int64_t I = I2 // 2
        cdef int64_t n_all = E if num_experts is None else num_experts
        if E < 1:
            raise ValueError(f"w13: expected at least one local expert, got shape {view_shape(&a)}")
        if local_expert_offset < 0 or local_expert_offset + E > n_all:
            raise ValueError(f"num_experts / local_expert_offset: the local experts [{local_expert_offset}, "
                             f"{local_expert_offset + E}) must lie in [0, {n_all})")
        ingest(w2, "w2", &ctx, &d)
        expect(&d, "w2", U8, (E, H, I // 2), 1)
        ingest(w13_scale, "w13_scale", &ctx, &b)
        ingest(w2_scale, "w2_scale", &ctx, &e)
        cdef size_t sb13 = 0, sb2 = 0
        if lay == 0:
            expect(&b, "w13_scale", U8, (E, I2, H // 16), 1)
            expect(&e, "w2_scale", U8, (E, H, I // 16), 1)
        else:
            expect(&b, "w13_scale", U8, None, 1)
            expect(&e, "w2_scale", U8, None, 1)
            if H % 16 == 0 and I % 16 == 0:
                check(moe12x_scale_bytes(I2, H, lay, &sb13), "w13_scale size")
                check(moe12x_scale_bytes(H, I, lay, &sb2), "w2_scale size")
                if b.ndim < 1 or b.shape[0] != E or numel(&b) != E * <int64_t>sb13:
                    raise ValueError(f"w13_scale: swizzled scales need {E} x {sb13} bytes, got shape {view_shape(&b)}")
                if e.ndim < 1 or e.shape[0] != E or numel(&e) != E * <int64_t>sb2:
                    raise ValueError(f"w2_scale: swizzled scales need {E} x {sb2} bytes, got shape {view_shape(&e)}")
        ingest(w13_global_scale, "w13_global_scale", &ctx, &c)
        expect(&c, "w13_global_scale", F32, (E,), 4)
        ingest(w2_global_scale, "w2_global_scale", &ctx, &f)
        expect(&f, "w2_global_scale", F32, (E,), 4)
        cdef View* vs[6]
        vs[0], vs[1], vs[2], vs[3], vs[4], vs[5] = &a, &b, &c, &d, &e, &f
        cdef int dev = common_device(vs, 6, ("w13", "w13_scale", "w13_global_scale", "w2", "w2_scale",
                                             "w2_global_scale"))

        moe12x_config_init(&self.cfg)
        self.cfg.num_experts = n_all
        self.cfg.num_local_experts = E
        self.cfg.local_expert_offset = local_expert_offset
        self.cfg.hidden_size = H
        self.cfg.intermediate_size = I
        self.cfg.top_k = 1
        self.cfg.device = dev
        check(moe12x_config_check(&self.cfg), "prepare_weights")
        cdef size_t nbytes = 0
        check(moe12x_prepared_weights_size(&self.cfg, &nbytes), "prepare_weights")
        self.buffer = DeviceBuffer(nbytes, dev)
        cdef moe12x_weights_t w
        w.struct_size = sizeof(moe12x_weights_t)
        w.w13 = <void*>a.ptr
        w.w13_scale = <void*>b.ptr
        w.w13_global_scale = <float*>c.ptr
        w.w2 = <void*>d.ptr
        w.w2_scale = <void*>e.ptr
        w.w2_global_scale = <float*>f.ptr
        w.scale_layout = lay
        w.gate_up_order = order
        check(moe12x_prepare_weights(&self.cfg, &w, <void*>self.buffer.ptr, nbytes,
                                     <moe12x_stream_t>ctx.stream), "prepare_weights")
        self.num_experts = self.cfg.num_experts
        self.num_local_experts = E
        self.local_expert_offset = local_expert_offset
        self.hidden_size = H
        self.intermediate_size = I
        self.device = dev

    @property
    def nbytes(self):
        return self.buffer.nbytes

    @property
    def closed(self):
        return self.buffer is None or self.buffer.ptr == 0

    def close(self):
        """Frees the device memory now; layers built on these weights can no longer be called."""
        if self.buffer is not None:
            self.buffer.close()

    def __repr__(self):
        return (f"PreparedWeights(E={self.num_experts}, E_local={self.num_local_experts}, "
                f"offset={self.local_expert_offset}, H={self.hidden_size}, I={self.intermediate_size}, "
                f"nbytes={self.nbytes}, device={self.device})")


# ---- the layer -------------------------------------------------------------------------------------

cdef int one_device(View* a, View* b, str na, str nb) except -1:
    if a.dev_id >= 0 and b.dev_id >= 0 and a.dev_id != b.dev_id:
        raise ValueError(f"{nb}: on device {b.dev_id}, but {na} is on device {a.dev_id}")
    return 0


cdef int fill_inputs(moe12x_inputs_t* inp, moe12x_config_t* cfg, object x, object topk_ids,
                     object topk_weights, object out, Ctx* c, View* vx) except -1:
    """Parses and checks x, topk_ids, topk_weights and (unless out is None) out. cfg.top_k < 0:
    take top_k from topk_ids (then written back to cfg.top_k)."""
    cdef View vi, vw, vo
    ingest(x, "x", c, vx)
    if vx.dtype != BF16:
        check_dtype(vx, "x", BF16)
    check2(vx, "x", -1, cfg.hidden_size)
    check_layout(vx, "x", 16, False)
    cdef int64_t T = vx.shape[0]
    ingest(topk_ids, "topk_ids", c, &vi)
    if vi.dtype != I32 and vi.dtype != I64:
        raise TypeError(f"topk_ids: expected int32 or int64, got {dtype_name(&vi)}")
    check2(&vi, "topk_ids", T, cfg.top_k)
    if cfg.top_k < 0:
        if vi.shape[1] < 1 or vi.shape[1] > 16:
            raise ValueError(f"topk_ids: expected shape [T, top_k] with top_k in 1..16, got {view_shape(&vi)}")
        cfg.top_k = <int32_t>vi.shape[1]
    check_layout(&vi, "topk_ids", vi.itemsize, False)
    one_device(vx, &vi, "x", "topk_ids")
    ingest(topk_weights, "topk_weights", c, &vw)
    if vw.dtype != F32 and vw.dtype != BF16:
        raise TypeError(f"topk_weights: expected float32 or bfloat16, got {dtype_name(&vw)}")
    check2(&vw, "topk_weights", T, cfg.top_k)
    check_layout(&vw, "topk_weights", vw.itemsize, False)
    one_device(vx, &vw, "x", "topk_weights")
    inp.struct_size = sizeof(moe12x_inputs_t)
    inp.num_tokens = T
    inp.x = <void*>vx.ptr
    inp.topk_ids = <void*>vi.ptr
    inp.ids_dtype = MOE12X_DTYPE_INT32 if vi.dtype == I32 else MOE12X_DTYPE_INT64
    inp.topk_weights = <void*>vw.ptr
    inp.weights_dtype = MOE12X_DTYPE_FLOAT32 if vw.dtype == F32 else MOE12X_DTYPE_BFLOAT16
    inp.out = NULL
    if out is not None:
        ingest(out, "out", c, &vo)
        if vo.dtype != BF16:
            check_dtype(&vo, "out", BF16)
        check2(&vo, "out", T, cfg.hidden_size)
        check_layout(&vo, "out", 16, True)
        one_device(vx, &vo, "x", "out")
        inp.out = <void*>vo.ptr
    if cfg.device >= 0 and vx.dev_id >= 0 and vx.dev_id != cfg.device:
        raise ValueError(f"x: on device {vx.dev_id}, but the weights live on device {cfg.device}")
    return 0


cdef const float* input_scale(object obj, str name, moe12x_config_t* cfg, Ctx* c,
                              int32_t* count) except? NULL:
    """fp32 input scale: 1 value, one per local expert, or one per expert (global ids)."""
    cdef View a
    ingest(obj, name, c, &a)
    expect(&a, name, F32, None, 4)
    cdef int64_t n = numel(&a)
    if n != 1 and n != cfg.num_local_experts and n != cfg.num_experts:
        raise ValueError(f"{name}: expected 1, {cfg.num_local_experts} (local experts) or "
                         f"{cfg.num_experts} (all experts) values, got {n}")
    if cfg.device >= 0 and a.dev_id >= 0 and a.dev_id != cfg.device:
        raise ValueError(f"{name}: on device {a.dev_id}, but the weights live on device {cfg.device}")
    count[0] = <int32_t>n
    return <const float*>a.ptr


cdef int fill_scales(moe12x_inputs_t* inp, moe12x_config_t* cfg, object fc1, object fc2, Ctx* c) except -1:
    inp.fc1_input_scale = NULL  # unread in act "none" mode
    inp.fc1_input_scale_count = 1
    if cfg.act_quant == MOE12X_ACT_QUANT_NVFP4 or fc1 is not None:
        inp.fc1_input_scale = input_scale(fc1, "fc1_input_scale", cfg, c, &inp.fc1_input_scale_count)
    inp.fc2_input_scale = input_scale(fc2, "fc2_input_scale", cfg, c, &inp.fc2_input_scale_count)
    return 0


cdef inline PreparedWeights live_weights(PreparedWeights w):
    if w.buffer is None or w.buffer.ptr == 0:
        raise ValueError("weights: these PreparedWeights were closed")
    return w


cdef class MoELayer:
    """One MoE layer: prepared weights, the fc1/fc2 input scales (parsed once, referenced) and a
    workspace sized for max_tokens. Calling it allocates nothing and never synchronizes with the
    host (except to order a CUDA-array-interface producer stream that differs from the launch
    stream): it can be captured in a CUDA graph.

    MoELayer(w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale, fc1_input_scale,
             fc2_input_scale, *, top_k, max_tokens, ...); pass a PreparedWeights as the first
    argument (and None for the other five weight arguments) to share weights between layers."""
    cdef moe12x_config_t cfg
    cdef readonly PreparedWeights weights
    cdef readonly DeviceBuffer workspace
    cdef object fc1, fc2
    cdef moe12x_inputs_t scales  # fc1/fc2 fields, parsed once
    cdef bint owns_weights

    def __init__(self, w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale,
                 fc1_input_scale, fc2_input_scale, *, int top_k, int64_t max_tokens, num_experts=None,
                 int local_expert_offset=0, act_quant="nvfp4", scale_layout="row_major",
                 gate_up_order="up_gate", schedule="auto", stream=None):
        # everything that needs no device first: a bad option never allocates or prepares
        cdef int act = option(_ACT, act_quant, "act_quant")
        cdef int sched = option(_SCHED, schedule, "schedule")
        option(_LAYOUT, scale_layout, "scale_layout")
        option(_ORDER, gate_up_order, "gate_up_order")
        if top_k < 1 or top_k > 16:
            raise ValueError(f"top_k: expected 1..16, got {top_k}")
        if max_tokens < 0:
            raise ValueError(f"max_tokens: expected >= 0, got {max_tokens}")
        if act == MOE12X_ACT_QUANT_NVFP4 and fc1_input_scale is None:
            raise ValueError("fc1_input_scale: required for act_quant='nvfp4'")
        if fc2_input_scale is None:
            raise ValueError("fc2_input_scale: required (the library takes it in both act_quant modes)")
        if stream is not None:
            resolve_stream(stream)
        if isinstance(w13, PreparedWeights):
            for nm, arg in (("w13_scale", w13_scale), ("w13_global_scale", w13_global_scale), ("w2", w2),
                            ("w2_scale", w2_scale), ("w2_global_scale", w2_global_scale)):
                if arg is not None:
                    raise ValueError(f"{nm}: expected None when the first argument is a PreparedWeights")
            weights = live_weights(w13)
            self.owns_weights = False
        else:
            weights = PreparedWeights(w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale,
                                      num_experts=num_experts, local_expert_offset=local_expert_offset,
                                      scale_layout=scale_layout, gate_up_order=gate_up_order, stream=stream)
            self.owns_weights = True
        self._init(weights, fc1_input_scale, fc2_input_scale, top_k, max_tokens, act, sched, stream)

    cdef _init(self, PreparedWeights weights, fc1, fc2, int top_k, int64_t max_tokens, int act, int sched, stream):
        self.weights = weights
        self.cfg = weights.cfg
        self.cfg.top_k = top_k
        self.cfg.max_tokens = max_tokens
        self.cfg.act_quant = act
        self.cfg.schedule = sched
        cdef Ctx ctx
        ctx_init(&ctx, stream)
        fill_scales(&self.scales, &self.cfg, fc1, fc2, &ctx)
        check(moe12x_config_check(&self.cfg), "MoELayer")
        cdef size_t nbytes = 0
        check(moe12x_workspace_size(&self.cfg, max_tokens, &nbytes), "MoELayer workspace")
        self.workspace = DeviceBuffer(nbytes, weights.device)
        self.fc1, self.fc2 = fc1, fc2  # keep the scale arrays alive

    @property
    def workspace_bytes(self):
        return self.workspace.nbytes

    @property
    def prepared_bytes(self):
        return self.weights.nbytes

    @property
    def max_tokens(self):
        return self.cfg.max_tokens

    @property
    def top_k(self):
        return self.cfg.top_k

    @property
    def hidden_size(self):
        return self.cfg.hidden_size

    @property
    def act_quant(self):
        return ("nvfp4", "none")[self.cfg.act_quant]

    @property
    def schedule(self):
        return _SCHED_NAMES[self.cfg.schedule]

    def select_schedule(self, int64_t num_tokens):
        """The schedule ("static" / "dynamic") a call with num_tokens tokens runs."""
        cdef int32_t s = 0
        check(moe12x_select_schedule(&self.cfg, num_tokens, &s), "select_schedule")
        return _SCHED_NAMES[s]

    def close(self):
        """Frees the workspace now, and the weights if this layer prepared them itself."""
        if self.workspace is not None:
            self.workspace.close()
        if self.owns_weights and self.weights is not None:
            self.weights.close()

    def __call__(self, x, topk_ids, topk_weights, out, stream=None):
        """out[T, H] = MoE(x[T, H]) for topk_ids / topk_weights [T, top_k]; returns out.
        stream=None: the producer's current stream where it can be found, else the legacy
        default stream."""
        cdef Ctx ctx
        cdef View vx
        ctx_init(&ctx, stream)
        cdef moe12x_inputs_t inp = self.scales
        if out is None:
            raise TypeError("out: expected a bfloat16 [T, H] CUDA array (MoELayer never allocates)")
        fill_inputs(&inp, &self.cfg, x, topk_ids, topk_weights, out, &ctx, &vx)
        if inp.num_tokens > self.cfg.max_tokens:
            raise ValueError(f"x / topk_ids: {inp.num_tokens} tokens exceed this layer's max_tokens "
                             f"({self.cfg.max_tokens})")
        if inp.num_tokens == 0:
            return out
        cdef PreparedWeights w = self.weights
        if w.buffer.ptr == 0 or self.workspace.ptr == 0:
            raise ValueError("MoELayer: closed (its weights or workspace were freed)")
        cdef moe12x_status_t st
        cdef const void* prepared = <void*>w.buffer.ptr
        cdef void* ws = <void*>self.workspace.ptr
        cdef size_t wsb = self.workspace.nbytes
        with nogil:
            st = moe12x_run(&self.cfg, prepared, &inp, ws, wsb, <moe12x_stream_t>ctx.stream)
        if st != MOE12X_SUCCESS:
            check(st, "MoELayer")
        if type(out) is DeviceArray:
            (<DeviceArray>out)._written_on(ctx.stream)
        return out


# Functional call: one workspace per (device, stream), replaced by a larger one when needed.
cdef dict _workspaces = {}


def clear_workspace_cache():
    """Frees fused_moe's cached workspaces (cudaFree waits for work still using them)."""
    for ws in _workspaces.values():
        (<DeviceBuffer>ws).close()
    _workspaces.clear()


def _workspace_cache_info():
    """{(device, stream): bytes} of fused_moe's cached workspaces (for tests and tools)."""
    return {k: (<DeviceBuffer>v).nbytes for k, v in _workspaces.items()}


def fused_moe(x, topk_ids, topk_weights, PreparedWeights weights, fc1_input_scale, fc2_input_scale, *,
              out=None, act_quant="nvfp4", schedule="auto", stream=None):
    """out[T, H] = MoE(x[T, H]) with prepared weights; top_k is topk_ids.shape[1]. Returns out
    (a new pymoe.DeviceArray when out is None). The workspace is cached per (device, stream) and
    grown geometrically; the first call with a larger T allocates (not graph-capturable: use
    MoELayer there)."""
    if weights is None:
        raise TypeError("weights: expected a pymoe.PreparedWeights (see pymoe.prepare_weights)")
    live_weights(weights)
    cdef moe12x_config_t cfg = weights.cfg
    cfg.act_quant = option(_ACT, act_quant, "act_quant")
    cfg.schedule = option(_SCHED, schedule, "schedule")
    cfg.top_k = -1
    cdef Ctx ctx
    cdef View vx
    ctx_init(&ctx, stream)
    cdef moe12x_inputs_t inp
    fill_inputs(&inp, &cfg, x, topk_ids, topk_weights, out, &ctx, &vx)
    fill_scales(&inp, &cfg, fc1_input_scale, fc2_input_scale, &ctx)
    cdef int64_t T = inp.num_tokens
    cfg.max_tokens = T
    cdef intptr_t s = ctx.stream
    cdef int dev = vx.dev_id if vx.dev_id >= 0 else weights.device
    if out is None:
        out = DeviceArray((T, cfg.hidden_size), "bfloat16", dev)
        inp.out = <void*>(<DeviceArray>out).buffer.ptr
    if T == 0:
        return out
    cdef size_t need = 0
    check(moe12x_workspace_size(&cfg, T, &need), "fused_moe workspace")
    key = (dev, s)
    cdef DeviceBuffer ws = _workspaces.get(key)
    if ws is None or ws.nbytes < need:
        grow = 0 if ws is None else 2 * ws.nbytes
        if ws is not None:  # exactly one workspace per key: free the old one first
            del _workspaces[key]
            ws.close()
        ws = DeviceBuffer(max(need, grow), dev)
        _workspaces[key] = ws
    cdef moe12x_status_t st
    with nogil:
        st = moe12x_run(&cfg, <void*>weights.buffer.ptr, &inp, <void*>ws.ptr, ws.nbytes, <moe12x_stream_t>s)
    check(st, "fused_moe")
    if type(out) is DeviceArray:
        (<DeviceArray>out)._written_on(s)
    return out


def quantize_nvfp4(x, global_scale, q_out, scale_out, *, scale_layout="row_major", stream=None):
    """bf16 [rows, cols] -> NVFP4 codes (uint8 [rows, cols/2]) and e4m3 block scales, bit-exact
    with pymoe.reference.quantize_nvfp4. x may have a row stride larger than cols. Returns
    (q_out, scale_out)."""
    cdef int lay = option(_LAYOUT, scale_layout, "scale_layout")
    cdef Ctx ctx
    ctx_init(&ctx, stream)
    cdef View vx, vg, vq, vs
    ingest(x, "x", &ctx, &vx)
    check_dtype(&vx, "x", BF16)
    if vx.ndim != 2:
        raise ValueError(f"x: expected 2 dimensions [rows, cols], got shape {view_shape(&vx)}")
    cdef int64_t rows = vx.shape[0], cols = vx.shape[1]
    if vx.strides[1] != 1 and cols > 1:
        raise ValueError(f"x: expected unit stride along columns, got strides {(vx.strides[0], vx.strides[1])}")
    cdef int64_t ld = vx.strides[0] if rows > 1 else cols
    if ld < cols:
        raise ValueError(f"x: row stride {ld} is smaller than cols {cols}")
    if cols % 16 or cols == 0:
        raise ValueError(f"x: cols = {cols}, expected a positive multiple of 16")
    if vx.ptr % 2:
        raise ValueError(f"x: data pointer {vx.ptr:#x} is not 2-byte aligned")
    ingest(global_scale, "global_scale", &ctx, &vg)
    expect(&vg, "global_scale", F32, None, 4)
    if numel(&vg) != 1:
        raise ValueError(f"global_scale: expected one float32 value, got {numel(&vg)}")
    ingest(q_out, "q_out", &ctx, &vq)
    expect(&vq, "q_out", U8, (rows, cols // 2), 8, True)
    ingest(scale_out, "scale_out", &ctx, &vs)
    expect(&vs, "scale_out", U8, None, 1, True)
    cdef size_t nsf = 0
    check(moe12x_scale_bytes(rows, cols, lay, &nsf), "quantize_nvfp4")
    if numel(&vs) != <int64_t>nsf:
        raise ValueError(f"scale_out: expected {nsf} bytes for {rows} x {cols} ({scale_layout}), got {numel(&vs)}")
    if lay == 0 and vs.ndim == 2 and (vs.shape[0] != rows or vs.shape[1] != cols // 16):
        raise ValueError(f"scale_out: expected shape [{rows}, {cols // 16}] (or flat), got {view_shape(&vs)}")
    one_device(&vx, &vg, "x", "global_scale")
    one_device(&vx, &vq, "x", "q_out")
    one_device(&vx, &vs, "x", "scale_out")
    if rows == 0:
        return q_out, scale_out
    cdef moe12x_status_t st
    with nogil:
        st = moe12x_quantize_nvfp4(<void*>vx.ptr, rows, cols, ld, <float*>vg.ptr, <void*>vq.ptr,
                                   <void*>vs.ptr, lay, <moe12x_stream_t>ctx.stream)
    check(st, "quantize_nvfp4")
    return q_out, scale_out


# ---- probes for tests and benchmarks ------------------------------------------------------------------

def _bench_parse(x, topk_ids, topk_weights, out, int n, int hidden, int top_k, stream=None):
    """Host-cost probe: parses and validates the four per-call arrays n times (what
    MoELayer.__call__ does before moe12x_run). Returns T."""
    cdef moe12x_config_t cfg
    moe12x_config_init(&cfg)
    cfg.hidden_size = hidden
    cfg.top_k = top_k
    cfg.device = -1
    cdef moe12x_inputs_t inp
    cdef Ctx ctx
    cdef View vx
    cdef int i
    for i in range(n):
        ctx_init(&ctx, stream)
        fill_inputs(&inp, &cfg, x, topk_ids, topk_weights, out, &ctx, &vx)
    return inp.num_tokens


cdef int ingest_probe(object obj, Ctx* c, View* v, bint allow_host) except -1:
    if allow_host and hasattr(obj, "__dlpack__") and exchange_api(obj) == NULL:
        try:
            cap = obj.__dlpack__(max_version=(1, 1))
        except TypeError:
            cap = obj.__dlpack__()
        view_from_capsule(cap, v, "a")
    else:
        ingest(obj, "a", c, v)
    return 0


def _bench_ingest(obj, int n, stream=None, bint allow_host=False):
    """Host-cost probe: ingests one array n times (no checks). allow_host: parse host (NumPy)
    capsules instead of rejecting them."""
    cdef Ctx ctx
    cdef View v
    cdef int i
    for i in range(n):
        ctx_init(&ctx, stream)
        ingest_probe(obj, &ctx, &v, allow_host)
    return v.ndim


def _parse(obj, stream=None, bint allow_host=False):
    """What pymoe sees in obj: a dict with ptr, shape, strides (elements), dtype (DLPack code,
    bits, lanes), dtype_name, accepted (pymoe's dtype or None), itemsize, device (type, id),
    readonly, and the stream the call would launch on. allow_host: report host arrays instead
    of rejecting them (tests of the capsule parser)."""
    cdef Ctx ctx
    cdef View v
    ctx_init(&ctx, stream)
    memset(&v, 0, sizeof(View))
    ingest_probe(obj, &ctx, &v, allow_host)
    return {"ptr": v.ptr, "shape": view_shape(&v), "strides": tuple([v.strides[i] for i in range(v.ndim)]),
            "dtype": (v.code, v.bits, v.lanes), "dtype_name": dtype_name(&v),
            "accepted": None if v.dtype == OTHER else _DTYPE_NAMES[v.dtype], "itemsize": v.itemsize,
            "device": (v.dev_type, v.dev_id), "readonly": bool(v.readonly),
            "stream": ctx.stream if ctx.known else None}


def _exchange_api_version(obj):
    """(major, minor) of the DLPack C exchange API pymoe uses for type(obj), or None."""
    cdef pymoe_DLPackExchangeAPI* api = exchange_api(obj)
    if api == NULL:
        return None
    return (api.version.major, api.version.minor)
