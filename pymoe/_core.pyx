# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""pymoe._core: array ingestion (DLPack / __cuda_array_interface__, no framework imports),
validation, and thin owners of device memory around the moe12x C ABI."""
from cpython.pycapsule cimport (PyCapsule_GetPointer, PyCapsule_IsValid, PyCapsule_New,
                                PyCapsule_SetName)
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.stdint cimport int32_t, int64_t, intptr_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from moe12x cimport *

# ---- DLPack (v1.x layout, versioned and legacy) ---------------------------------------------------
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
    /* DLPack >= 1.2 C exchange API (the type attribute __dlpack_c_exchange_api__). */
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
    ctypedef struct pymoe_DLManagedTensorVersioned:
        uint64_t flags
        void* manager_ctx
        void (*deleter)(pymoe_DLManagedTensorVersioned*)
        pymoe_DLTensor dl_tensor
    ctypedef struct pymoe_DLPackVersion:
        uint32_t major
        uint32_t minor
    ctypedef struct pymoe_DLPackExchangeAPI:
        pymoe_DLPackVersion version
        int (*managed_tensor_from_py_object_no_sync)(void*, pymoe_DLManagedTensorVersioned**)
        int (*dltensor_from_py_object_no_sync)(void*, pymoe_DLTensor*)
        int (*current_work_stream)(int32_t, int32_t, void**)

DEF MAXDIM = 4
cdef enum Dtype:
    BF16 = 0
    F32 = 1
    I32 = 2
    I64 = 3
    U8 = 4     # uint8, and the byte views of fp8 e4m3 / fp4 e2m1x2
    OTHER = 5

_DTYPE_NAMES = ("bfloat16", "float32", "int32", "int64", "uint8 (or fp8/fp4 bytes)", "unsupported")
cdef int kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13
cdef uint64_t kReadOnly = 1

cdef struct View:
    uintptr_t ptr
    int ndim
    int64_t shape[MAXDIM]
    int64_t strides[MAXDIM]   # elements
    int dtype
    int itemsize
    int dev_type
    int dev_id
    bint readonly


class MoeError(RuntimeError):
    """A failure inside libmoe12x; .status is the moe12x_status_t, .status_name its name."""

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = moe12x_status_string(<moe12x_status_t>status).decode()
        super().__init__(f"{self.status_name}: {message}")


cdef int check(moe12x_status_t s, str what) except -1:
    if s == MOE12X_SUCCESS:
        return 0
    msg = moe12x_get_last_error().decode(errors="replace")
    raise MoeError(<int>s, f"{what}: {msg}")


cdef int dl_dtype(pymoe_DLDataType t, int* itemsize):
    if t.lanes == 1:
        if t.code == 4 and t.bits == 16:      # kDLBfloat
            itemsize[0] = 2; return BF16
        if t.code == 2 and t.bits == 32:      # kDLFloat
            itemsize[0] = 4; return F32
        if t.code == 0 and t.bits == 32:      # kDLInt
            itemsize[0] = 4; return I32
        if t.code == 0 and t.bits == 64:
            itemsize[0] = 8; return I64
        if (t.code == 1 and t.bits == 8) or (7 <= t.code <= 14 and t.bits == 8):  # uint8, fp8 kinds
            itemsize[0] = 1; return U8
    if t.code == 17 and t.bits == 4 and t.lanes == 2:  # float4_e2m1fn_x2: a byte of two codes
        itemsize[0] = 1; return U8
    itemsize[0] = 0
    return OTHER


cdef int view_from_dltensor(pymoe_DLTensor* t, View* v, str name) except -1:
    if t.ndim > MAXDIM:
        raise ValueError(f"{name}: expected at most {MAXDIM} dimensions, got {t.ndim}")
    v.ndim = t.ndim
    v.dtype = dl_dtype(t.dtype, &v.itemsize)
    v.dev_type = t.device.device_type
    v.dev_id = t.device.device_id
    v.ptr = <uintptr_t>t.data + <uintptr_t>t.byte_offset
    cdef int i
    cdef int64_t expect = 1
    for i in range(t.ndim - 1, -1, -1):
        v.shape[i] = t.shape[i]
        if t.strides == NULL:
            v.strides[i] = expect
        else:
            v.strides[i] = t.strides[i]
        expect *= t.shape[i]
    return 0


cdef int view_from_capsule(object cap, View* v, str name) except -1:
    cdef pymoe_DLManagedTensorVersioned* mv
    cdef pymoe_DLManagedTensor* m
    if PyCapsule_IsValid(cap, b"dltensor_versioned"):
        mv = <pymoe_DLManagedTensorVersioned*>PyCapsule_GetPointer(cap, b"dltensor_versioned")
        try:
            view_from_dltensor(&mv.dl_tensor, v, name)
            v.readonly = (mv.flags & kReadOnly) != 0
        finally:
            # We only read the pointer; the producer object (still referenced by the caller)
            # keeps the memory alive, so the managed tensor can go now.
            PyCapsule_SetName(cap, b"used_dltensor_versioned")
            if mv.deleter != NULL:
                mv.deleter(mv)
        return 0
    if PyCapsule_IsValid(cap, b"dltensor"):
        m = <pymoe_DLManagedTensor*>PyCapsule_GetPointer(cap, b"dltensor")
        try:
            view_from_dltensor(&m.dl_tensor, v, name)
            v.readonly = False
        finally:
            PyCapsule_SetName(cap, b"used_dltensor")
            if m.deleter != NULL:
                m.deleter(m)
        return 0
    raise TypeError(f"{name}: __dlpack__ did not return a DLPack capsule")


_CAI_DTYPES = {"<f4": (F32, 4), "<i4": (I32, 4), "<i8": (I64, 8), "|u1": (U8, 1), "<u1": (U8, 1),
               "|i1": (OTHER, 1), "<f2": (OTHER, 2), "<V2": (BF16, 2), "|V2": (BF16, 2),
               "<u2": (OTHER, 2), "<f8": (OTHER, 8)}


cdef int view_from_cai(dict cai, View* v, str name) except -1:
    shape = cai["shape"]
    if len(shape) > MAXDIM:
        raise ValueError(f"{name}: expected at most {MAXDIM} dimensions, got {len(shape)}")
    data = cai["data"]
    v.ptr = <uintptr_t>(<object>data[0] or 0)
    v.readonly = bool(data[1])
    dt = _CAI_DTYPES.get(cai["typestr"], (OTHER, 0))
    v.dtype = dt[0]
    v.itemsize = dt[1]
    v.ndim = len(shape)
    v.dev_type = kDLCUDA
    v.dev_id = -1  # unknown from CAI; the library checks the pointer's device implicitly
    strides = cai.get("strides")
    cdef int i
    cdef int64_t expect = 1
    for i in range(v.ndim - 1, -1, -1):
        v.shape[i] = shape[i]
        if strides is None:
            v.strides[i] = expect
        else:
            if v.itemsize == 0 or strides[i] % v.itemsize:
                raise ValueError(f"{name}: stride {strides[i]} bytes is not a multiple of the item size")
            v.strides[i] = strides[i] // v.itemsize
        expect *= shape[i]
    return 0


cdef inline intptr_t dl_stream(intptr_t s):
    return 1 if s == 0 else s  # DLPack: 1 = legacy default stream (0 is not allowed)


cdef dict _exchange_apis = {}  # type -> DLPackExchangeAPI* as int (0: none), looked up once per type


cdef pymoe_DLPackExchangeAPI* exchange_api(object obj):
    cdef object key = type(obj)
    cdef object hit = _exchange_apis.get(key)
    cdef pymoe_DLPackExchangeAPI* api = NULL
    if hit is None:
        hit = 0
        cap = getattr(key, "__dlpack_c_exchange_api__", None)
        if cap is not None:
            if PyCapsule_IsValid(cap, b"dlpack_exchange_api"):
                api = <pymoe_DLPackExchangeAPI*>PyCapsule_GetPointer(cap, b"dlpack_exchange_api")
            elif isinstance(cap, int):
                api = <pymoe_DLPackExchangeAPI*><uintptr_t>cap
            if api != NULL and api.version.major == 1 and api.version.minor >= 2:
                hit = <uintptr_t>api
        _exchange_apis[key] = hit
    return <pymoe_DLPackExchangeAPI*><uintptr_t>hit


cdef int ingest(object obj, str name, intptr_t stream, View* v) except -1:
    """Fills v from obj. Prefers the DLPack C exchange API (no Python call, no stream sync: the
    caller launches on the producer's current stream), then __dlpack__ (passing our stream so the
    producer orders its work before ours), then __cuda_array_interface__."""
    cdef object cap
    cdef pymoe_DLTensor t
    cdef pymoe_DLManagedTensorVersioned* mv = NULL
    memset(v, 0, sizeof(View))
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
        if v.dev_type != kDLCUDA and v.dev_type != kDLCUDAManaged:
            kind = "a CPU array" if v.dev_type == kDLCPU else f"device type {v.dev_type}"
            raise ValueError(f"{name}: expected a CUDA device array, got {kind} (device type {v.dev_type})")
        return 0
    dl = getattr(obj, "__dlpack__", None)
    if dl is not None:
        dev = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else None
        if dev is not None and dev[0] == kDLCPU:
            raise ValueError(f"{name}: expected a CUDA device array, got a CPU array (device type 1)")
        try:
            cap = dl(stream=dl_stream(stream), max_version=(1, 1))
        except TypeError:
            try:
                cap = dl(stream=dl_stream(stream))
            except TypeError:
                cap = dl()
        except BufferError as e:
            raise ValueError(f"{name}: {e}") from None
        view_from_capsule(cap, v, name)
    else:
        cai = getattr(obj, "__cuda_array_interface__", None)
        if cai is None:
            raise TypeError(f"{name}: expected a CUDA array (an object with __dlpack__ or "
                            f"__cuda_array_interface__), got {type(obj).__name__}")
        view_from_cai(cai, v, name)
        producer = cai.get("stream")  # v3: work on it must finish before ours reads the array
        if producer is not None and producer != stream and producer != (1 if stream == 0 else stream):
            check(moe12x_stream_synchronize(<moe12x_stream_t><intptr_t>producer), f"{name}: producer stream")
    if v.dev_type != kDLCUDA and v.dev_type != kDLCUDAManaged:
        kind = "a CPU array" if v.dev_type == kDLCPU else f"device type {v.dev_type}"
        raise ValueError(f"{name}: expected a CUDA device array, got {kind} (device type {v.dev_type})")
    return 0


cdef int expect(View* v, str name, int dtype, tuple shape, int align, bint writable=False) except -1:
    """dtype (or -1 for any of I32/I64 or F32/BF16 handled by callers), shape with -1 = any,
    C-contiguous, aligned; writable for outputs."""
    cdef int i
    if dtype >= 0 and v.dtype != dtype:
        raise TypeError(f"{name}: expected {_DTYPE_NAMES[dtype]}, got {_DTYPE_NAMES[v.dtype]}")
    if shape is not None:
        if v.ndim != len(shape):
            raise ValueError(f"{name}: expected {len(shape)} dimensions {shape_str(shape)}, got shape {view_shape(v)}")
        for i in range(v.ndim):
            if shape[i] >= 0 and v.shape[i] != shape[i]:
                raise ValueError(f"{name}: expected shape {shape_str(shape)}, got {view_shape(v)}")
    cdef int64_t want = 1
    for i in range(v.ndim - 1, -1, -1):
        if v.shape[i] != 1 and v.strides[i] != want:
            raise ValueError(f"{name}: expected a C-contiguous array, got strides "
                             f"{tuple(v.strides[j] for j in range(v.ndim))} (elements) for shape {view_shape(v)}")
        want *= v.shape[i]
    if align > 1 and v.ptr % align:
        raise ValueError(f"{name}: data pointer {v.ptr:#x} is not {align}-byte aligned")
    if writable and v.readonly:
        raise ValueError(f"{name}: the output array is read-only")
    return 0


cdef str shape_str(tuple shape):
    return "[" + ", ".join("*" if s < 0 else str(s) for s in shape) + "]"


cdef tuple view_shape(View* v):
    return tuple(v.shape[i] for i in range(v.ndim))


cdef int64_t numel(View* v):
    cdef int64_t n = 1
    cdef int i
    for i in range(v.ndim):
        n *= v.shape[i]
    return n


cdef intptr_t producer_stream(object x) except? -1:
    """stream=None: the producer's current stream where it can be found (DLPack exchange API,
    CUDA array interface v3), else the legacy default stream (0)."""
    cdef pymoe_DLPackExchangeAPI* api = exchange_api(x)
    cdef void* s = NULL
    cdef View v
    if api != NULL:
        ingest(x, "x", 0, &v)
        if api.current_work_stream(kDLCUDA, v.dev_id, &s) != 0:
            return -1
        return <intptr_t>s
    cai = getattr(x, "__cuda_array_interface__", None) if not hasattr(x, "__dlpack__") else None
    if cai is not None and cai.get("stream") not in (None, 1, 2):
        return <intptr_t>cai["stream"]
    return 0


cdef intptr_t call_stream(object stream, object x) except? -1:
    return producer_stream(x) if stream is None else resolve_stream(stream)


cdef intptr_t resolve_stream(object stream) except? -1:
    if stream is None:
        return 0
    if isinstance(stream, int):
        return <intptr_t>stream
    cs = getattr(stream, "__cuda_stream__", None)
    if cs is not None:
        pair = cs()
        return <intptr_t>pair[1]
    for attr in ("cuda_stream", "ptr", "handle"):
        h = getattr(stream, attr, None)
        if isinstance(h, int):
            return <intptr_t>h
    raise TypeError(f"stream: expected None, an int handle, or an object with __cuda_stream__ / "
                    f".cuda_stream / .ptr, got {type(stream).__name__}")


cdef dict _ACT = {"nvfp4": 0, "none": 1}
cdef dict _ORDER = {"up_gate": 0, "gate_up": 1}
cdef dict _LAYOUT = {"row_major": 0, "swizzled": 1}
cdef dict _SCHED = {"auto": 0, "static": 1, "dynamic": 2}


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
    return MOE12X_VERSION


def device_count():
    """Number of CUDA devices; 0 without a driver or GPU (never raises)."""
    cdef int n = 0
    moe12x_device_count(&n)
    return n


def scale_bytes(int64_t rows, int64_t k, layout="row_major"):
    cdef size_t b = 0
    check(moe12x_scale_bytes(rows, k, option(_LAYOUT, layout, "layout"), &b), "scale_bytes")
    return b


def select_schedule(int num_experts, int num_local_experts, int top_k, int hidden_size,
                    int intermediate_size, int64_t num_tokens, schedule="auto"):
    """The schedule ("static" / "dynamic") the library runs for this shape and T."""
    cdef moe12x_config_t cfg
    moe12x_config_init(&cfg)
    cfg.num_experts, cfg.num_local_experts = num_experts, num_local_experts
    cfg.hidden_size, cfg.intermediate_size, cfg.top_k = hidden_size, intermediate_size, top_k
    cfg.max_tokens = num_tokens
    cfg.schedule = option(_SCHED, schedule, "schedule")
    cdef int32_t s = 0
    check(moe12x_select_schedule(&cfg, num_tokens, &s), "select_schedule")
    return ("auto", "static", "dynamic")[s]


# ---- device memory ------------------------------------------------------------------------------------

cdef class DeviceBuffer:
    """Raw device memory owned by pymoe (freed when collected)."""
    cdef readonly uintptr_t ptr
    cdef readonly size_t nbytes
    cdef readonly int device

    def __cinit__(self, size_t nbytes, int device=-1):
        cdef void* p = NULL
        check(moe12x_device_malloc(device, nbytes, &p), f"allocating {nbytes} device bytes")
        self.ptr = <uintptr_t>p
        self.nbytes = nbytes
        self.device = device

    def close(self):
        if self.ptr:
            moe12x_device_free(self.device, <void*>self.ptr)
            self.ptr = 0

    def __dealloc__(self):
        if self.ptr:
            moe12x_device_free(self.device, <void*>self.ptr)


cdef void _dl_deleter(pymoe_DLManagedTensor* m) noexcept with gil:
    if m.manager_ctx != NULL:
        Py_DECREF(<object>m.manager_ctx)
    free(m)


cdef void _dl_capsule_destructor(object cap) noexcept:
    cdef pymoe_DLManagedTensor* m
    if PyCapsule_IsValid(cap, b"dltensor"):  # never consumed
        m = <pymoe_DLManagedTensor*>PyCapsule_GetPointer(cap, b"dltensor")
        m.deleter(m)


_TYPESTR = {BF16: "<V2", F32: "<f4", I32: "<i4", I64: "<i8", U8: "|u1"}
_DLCODE = {BF16: (4, 16), F32: (2, 32), I32: (0, 32), I64: (0, 64), U8: (1, 8)}
_NAME_TO_DTYPE = {"bfloat16": BF16, "float32": F32, "int32": I32, "int64": I64, "uint8": U8}


cdef class DeviceArray:
    """A C-contiguous device array owned by pymoe; exposes __cuda_array_interface__ (v3) and
    __dlpack__ / __dlpack_device__ so torch, CuPy, JAX and Numba can view it without a copy."""
    cdef readonly DeviceBuffer buffer
    cdef readonly tuple shape
    cdef readonly str dtype
    cdef int _dt

    def __init__(self, shape, dtype="bfloat16", int device=-1):
        self.shape = tuple(int(s) for s in shape)
        if dtype not in _NAME_TO_DTYPE:
            raise TypeError(f"dtype: expected one of {sorted(_NAME_TO_DTYPE)}, got {dtype!r}")
        self.dtype = dtype
        self._dt = _NAME_TO_DTYPE[dtype]
        n = 1
        for s in self.shape:
            n *= s
        self.buffer = DeviceBuffer(max(n, 1) * (2 if self._dt == BF16 else 4 if self._dt in (F32, I32) else 8 if self._dt == I64 else 1), device)

    @property
    def ptr(self):
        return self.buffer.ptr

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": _TYPESTR[self._dt], "data": (self.buffer.ptr, False),
                "version": 3, "strides": None, "stream": None}

    def __dlpack_device__(self):
        cdef int dev = self.buffer.device
        return (kDLCUDA, dev if dev >= 0 else 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        cdef int nd = len(self.shape)
        cdef pymoe_DLManagedTensor* m = <pymoe_DLManagedTensor*>malloc(
            sizeof(pymoe_DLManagedTensor) + 2 * sizeof(int64_t) * (nd if nd > 0 else 1))
        if m == NULL:
            raise MemoryError()
        cdef int64_t* shp = <int64_t*>(<char*>m + sizeof(pymoe_DLManagedTensor))
        cdef int64_t* strd = shp + nd
        cdef int64_t acc = 1
        cdef int i
        for i in range(nd - 1, -1, -1):
            shp[i] = self.shape[i]
            strd[i] = acc
            acc *= self.shape[i]
        m.dl_tensor.data = <void*>self.buffer.ptr
        m.dl_tensor.device.device_type = kDLCUDA
        m.dl_tensor.device.device_id = self.__dlpack_device__()[1]
        m.dl_tensor.ndim = nd
        code = _DLCODE[self._dt]
        m.dl_tensor.dtype.code = code[0]
        m.dl_tensor.dtype.bits = code[1]
        m.dl_tensor.dtype.lanes = 1
        m.dl_tensor.shape = shp
        m.dl_tensor.strides = strd
        m.dl_tensor.byte_offset = 0
        Py_INCREF(self)
        m.manager_ctx = <void*>self
        m.deleter = _dl_deleter
        return PyCapsule_New(m, b"dltensor", _dl_capsule_destructor)


# ---- weights ---------------------------------------------------------------------------------------

cdef class PreparedWeights:
    """Weights of the local experts in the library's layout (device memory owned here)."""
    cdef moe12x_config_t cfg
    cdef readonly DeviceBuffer buffer
    cdef readonly int num_experts, num_local_experts, local_expert_offset, hidden_size, intermediate_size
    cdef readonly int device

    def __init__(self, w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale, *,
                 num_experts=None, int local_expert_offset=0, scale_layout="row_major",
                 gate_up_order="up_gate", stream=None):
        cdef View a, b, c, d, e, f
        cdef intptr_t s = resolve_stream(stream)
        ingest(w13, "w13", s, &a)
        expect(&a, "w13", U8, (-1, -1, -1), 1)
        cdef int64_t E = a.shape[0], I2 = a.shape[1], H = a.shape[2] * 2
        if I2 % 2:
            raise ValueError(f"w13: expected shape [E_local, 2*I, H/2] with an even second dimension, got {view_shape(&a)}")
        cdef int64_t I = I2 // 2
        cdef int lay = option(_LAYOUT, scale_layout, "scale_layout")
        cdef int order = option(_ORDER, gate_up_order, "gate_up_order")
        ingest(w2, "w2", s, &d)
        expect(&d, "w2", U8, (E, H, I // 2), 1)
        ingest(w13_scale, "w13_scale", s, &b)
        ingest(w2_scale, "w2_scale", s, &e)
        cdef size_t sb13 = 0, sb2 = 0
        if H % 64 == 0 and I % 64 == 0:
            check(moe12x_scale_bytes(I2, H, lay, &sb13), "w13_scale size")
            check(moe12x_scale_bytes(H, I, lay, &sb2), "w2_scale size")
        if lay == 0:
            expect(&b, "w13_scale", U8, (E, I2, H // 16), 1)
            expect(&e, "w2_scale", U8, (E, H, I // 16), 1)
        else:
            expect(&b, "w13_scale", U8, None, 1)
            expect(&e, "w2_scale", U8, None, 1)
            if b.ndim < 1 or b.shape[0] != E or numel(&b) != E * <int64_t>sb13:
                raise ValueError(f"w13_scale: swizzled scales need {E} x {sb13} bytes, got shape {view_shape(&b)}")
            if e.ndim < 1 or e.shape[0] != E or numel(&e) != E * <int64_t>sb2:
                raise ValueError(f"w2_scale: swizzled scales need {E} x {sb2} bytes, got shape {view_shape(&e)}")
        ingest(w13_global_scale, "w13_global_scale", s, &c)
        expect(&c, "w13_global_scale", F32, (E,), 4)
        ingest(w2_global_scale, "w2_global_scale", s, &f)
        expect(&f, "w2_global_scale", F32, (E,), 4)

        moe12x_config_init(&self.cfg)
        self.cfg.num_experts = E if num_experts is None else num_experts
        self.cfg.num_local_experts = E
        self.cfg.local_expert_offset = local_expert_offset
        self.cfg.hidden_size = H
        self.cfg.intermediate_size = I
        self.cfg.top_k = 1
        self.cfg.device = a.dev_id
        check(moe12x_config_check(&self.cfg), "prepare_weights")
        cdef size_t nbytes = 0
        check(moe12x_prepared_weights_size(&self.cfg, &nbytes), "prepare_weights")
        self.buffer = DeviceBuffer(nbytes, a.dev_id)
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
        check(moe12x_prepare_weights(&self.cfg, &w, <void*>self.buffer.ptr, nbytes, <moe12x_stream_t>s),
              "prepare_weights")
        self.num_experts = self.cfg.num_experts
        self.num_local_experts = E
        self.local_expert_offset = local_expert_offset
        self.hidden_size = H
        self.intermediate_size = I
        self.device = a.dev_id

    @property
    def nbytes(self):
        return self.buffer.nbytes

    def close(self):
        self.buffer.close()


# ---- the layer -------------------------------------------------------------------------------------

cdef int fill_inputs(moe12x_inputs_t* inp, moe12x_config_t* cfg, object x, object topk_ids,
                     object topk_weights, object out, intptr_t stream) except -1:
    cdef View vx, vi, vw, vo
    ingest(x, "x", stream, &vx)
    expect(&vx, "x", BF16, (-1, cfg.hidden_size), 16)
    cdef int64_t T = vx.shape[0]
    ingest(topk_ids, "topk_ids", stream, &vi)
    if vi.dtype != I32 and vi.dtype != I64:
        raise TypeError(f"topk_ids: expected int32 or int64, got {_DTYPE_NAMES[vi.dtype]}")
    expect(&vi, "topk_ids", -1, (T, cfg.top_k), vi.itemsize)
    ingest(topk_weights, "topk_weights", stream, &vw)
    if vw.dtype != F32 and vw.dtype != BF16:
        raise TypeError(f"topk_weights: expected float32 or bfloat16, got {_DTYPE_NAMES[vw.dtype]}")
    expect(&vw, "topk_weights", -1, (T, cfg.top_k), vw.itemsize)
    ingest(out, "out", stream, &vo)
    expect(&vo, "out", BF16, (T, cfg.hidden_size), 16, True)
    if (vi.dev_id >= 0 and vx.dev_id >= 0 and vi.dev_id != vx.dev_id) or \
       (vw.dev_id >= 0 and vx.dev_id >= 0 and vw.dev_id != vx.dev_id) or \
       (vo.dev_id >= 0 and vx.dev_id >= 0 and vo.dev_id != vx.dev_id):
        raise ValueError(f"x, topk_ids, topk_weights, out: expected arrays on one device, got devices "
                         f"{vx.dev_id}, {vi.dev_id}, {vw.dev_id}, {vo.dev_id}")
    if cfg.device >= 0 and vx.dev_id >= 0 and vx.dev_id != cfg.device:
        raise ValueError(f"x: on device {vx.dev_id}, but the weights live on device {cfg.device}")
    inp.struct_size = sizeof(moe12x_inputs_t)
    inp.num_tokens = T
    inp.x = <void*>vx.ptr
    inp.topk_ids = <void*>vi.ptr
    inp.ids_dtype = 0 if vi.dtype == I32 else 1
    inp.topk_weights = <void*>vw.ptr
    inp.weights_dtype = 2 if vw.dtype == F32 else 3
    inp.out = <void*>vo.ptr
    return 0


cdef const float* input_scale(object obj, str name, moe12x_config_t* cfg, intptr_t stream,
                              int32_t* count) except? NULL:
    """fp32 input scale: 1 value, one per local expert, or one per expert (global ids)."""
    cdef View a
    ingest(obj, name, stream, &a)
    expect(&a, name, F32, None, 4)
    n = numel(&a)
    if n not in (1, cfg.num_local_experts, cfg.num_experts):
        raise ValueError(f"{name}: expected 1, {cfg.num_local_experts} (local experts) or "
                         f"{cfg.num_experts} (all experts) values, got {n}")
    count[0] = n
    return <const float*>a.ptr


cdef int fill_scales(moe12x_inputs_t* inp, moe12x_config_t* cfg, object fc1, object fc2,
                     intptr_t stream) except -1:
    inp.fc1_input_scale = NULL  # unread in act "none" mode
    inp.fc1_input_scale_count = 1
    if cfg.act_quant == 0:
        inp.fc1_input_scale = input_scale(fc1, "fc1_input_scale", cfg, stream, &inp.fc1_input_scale_count)
    inp.fc2_input_scale = input_scale(fc2, "fc2_input_scale", cfg, stream, &inp.fc2_input_scale_count)
    return 0


cdef class MoELayer:
    """Owns prepared weights and a workspace sized for max_tokens. Calling it allocates nothing
    and never synchronizes with the host: it can be captured in a CUDA graph."""
    cdef moe12x_config_t cfg
    cdef readonly PreparedWeights weights
    cdef readonly DeviceBuffer workspace
    cdef object fc1, fc2
    cdef moe12x_inputs_t scales  # fc1/fc2 fields, parsed once

    def __init__(self, w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale,
                 fc1_input_scale, fc2_input_scale, *, int top_k, int64_t max_tokens, num_experts=None,
                 int local_expert_offset=0, act_quant="nvfp4", scale_layout="row_major",
                 gate_up_order="up_gate", schedule="auto", stream=None):
        weights = w13 if isinstance(w13, PreparedWeights) else PreparedWeights(
            w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale, num_experts=num_experts,
            local_expert_offset=local_expert_offset, scale_layout=scale_layout,
            gate_up_order=gate_up_order, stream=stream)
        self._init(weights, fc1_input_scale, fc2_input_scale, top_k, max_tokens, act_quant, schedule, stream)

    cdef _init(self, PreparedWeights weights, fc1, fc2, int top_k, int64_t max_tokens, act_quant, schedule, stream):
        self.weights = weights
        self.cfg = weights.cfg
        self.cfg.top_k = top_k
        self.cfg.max_tokens = max_tokens
        self.cfg.act_quant = option(_ACT, act_quant, "act_quant")
        self.cfg.schedule = option(_SCHED, schedule, "schedule")
        if top_k < 1 or top_k > 16:
            raise ValueError(f"top_k: expected 1..16, got {top_k}")
        if max_tokens < 0:
            raise ValueError(f"max_tokens: expected >= 0, got {max_tokens}")
        check(moe12x_config_check(&self.cfg), "MoELayer")
        cdef size_t nbytes = 0
        check(moe12x_workspace_size(&self.cfg, max_tokens, &nbytes), "MoELayer workspace")
        self.workspace = DeviceBuffer(nbytes, weights.device)
        fill_scales(&self.scales, &self.cfg, fc1, fc2, resolve_stream(stream))
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

    def select_schedule(self, int64_t num_tokens):
        cdef int32_t s = 0
        check(moe12x_select_schedule(&self.cfg, num_tokens, &s), "select_schedule")
        return ("auto", "static", "dynamic")[s]

    def __call__(self, x, topk_ids, topk_weights, out, stream=None):
        cdef intptr_t s = call_stream(stream, x)
        cdef moe12x_inputs_t inp = self.scales
        fill_inputs(&inp, &self.cfg, x, topk_ids, topk_weights, out, s)
        if inp.num_tokens > self.cfg.max_tokens:
            raise ValueError(f"x: {inp.num_tokens} tokens exceed this layer's max_tokens ({self.cfg.max_tokens})")
        if inp.num_tokens == 0:
            return out
        cdef moe12x_status_t st
        with nogil:
            st = moe12x_run(&self.cfg, <void*>self.weights.buffer.ptr, &inp, <void*>self.workspace.ptr,
                            self.workspace.nbytes, <moe12x_stream_t>s)
        check(st, "MoELayer")
        return out


# Functional call: one workspace per (device, stream), replaced by a larger one when needed.
cdef dict _workspaces = {}


def clear_workspace_cache():
    _workspaces.clear()


def fused_moe(x, topk_ids, topk_weights, PreparedWeights weights, fc1_input_scale, fc2_input_scale, *,
              out=None, act_quant="nvfp4", schedule="auto", stream=None):
    """out = MoE(x) with prepared weights; returns out (a pymoe.DeviceArray when out is None)."""
    if weights is None:
        raise TypeError("weights: expected a pymoe.PreparedWeights (see pymoe.prepare_weights)")
    cdef intptr_t s = call_stream(stream, x)
    cdef moe12x_config_t cfg = weights.cfg
    cdef View vi
    ingest(topk_ids, "topk_ids", s, &vi)
    if vi.ndim != 2:
        raise ValueError(f"topk_ids: expected 2 dimensions [T, top_k], got shape {view_shape(&vi)}")
    cfg.top_k = vi.shape[1]
    if cfg.top_k < 1 or cfg.top_k > 16:
        raise ValueError(f"topk_ids: top_k = {cfg.top_k}, expected 1..16")
    cfg.act_quant = option(_ACT, act_quant, "act_quant")
    cfg.schedule = option(_SCHED, schedule, "schedule")
    cfg.max_tokens = vi.shape[0]
    if out is None:
        out = DeviceArray((vi.shape[0], cfg.hidden_size), "bfloat16", weights.device)
    cdef moe12x_inputs_t inp
    fill_scales(&inp, &cfg, fc1_input_scale, fc2_input_scale, s)
    fill_inputs(&inp, &cfg, x, topk_ids, topk_weights, out, s)
    if inp.num_tokens == 0:
        return out
    cdef size_t need = 0
    check(moe12x_workspace_size(&cfg, inp.num_tokens, &need), "fused_moe workspace")
    key = (weights.device, s)
    cdef DeviceBuffer ws = _workspaces.get(key)
    if ws is None or ws.nbytes < need:
        _workspaces.pop(key, None)  # free the old one first
        ws = DeviceBuffer(max(need, 2 * (ws.nbytes if ws is not None else 0)), weights.device)
        _workspaces[key] = ws
    cdef moe12x_status_t st
    with nogil:
        st = moe12x_run(&cfg, <void*>weights.buffer.ptr, &inp, <void*>ws.ptr, ws.nbytes, <moe12x_stream_t>s)
    check(st, "fused_moe")
    return out


def quantize_nvfp4(x, global_scale, q_out, scale_out, *, scale_layout="row_major", stream=None):
    """bf16 [rows, cols] -> NVFP4 codes (uint8 [rows, cols/2]) and e4m3 scales, bit-exact with
    pymoe.reference.quantize_nvfp4. x may have a row stride larger than cols."""
    cdef intptr_t s = call_stream(stream, x)
    cdef View vx, vg, vq, vs
    cdef int lay = option(_LAYOUT, scale_layout, "scale_layout")
    ingest(x, "x", s, &vx)
    if vx.dtype != BF16:
        raise TypeError(f"x: expected bfloat16, got {_DTYPE_NAMES[vx.dtype]}")
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
    ingest(global_scale, "global_scale", s, &vg)
    expect(&vg, "global_scale", F32, None, 4)
    if numel(&vg) != 1:
        raise ValueError(f"global_scale: expected one float32 value, got {numel(&vg)}")
    ingest(q_out, "q_out", s, &vq)
    expect(&vq, "q_out", U8, (rows, cols // 2), 8, True)
    ingest(scale_out, "scale_out", s, &vs)
    expect(&vs, "scale_out", U8, None, 1, True)
    cdef size_t nsf = 0
    check(moe12x_scale_bytes(rows, cols, lay, &nsf), "quantize_nvfp4")
    if numel(&vs) != <int64_t>nsf:
        raise ValueError(f"scale_out: expected {nsf} bytes for {rows} x {cols} ({scale_layout}), got {numel(&vs)}")
    if rows == 0:
        return q_out, scale_out
    cdef moe12x_status_t st
    with nogil:
        st = moe12x_quantize_nvfp4(<void*>vx.ptr, rows, cols, ld, <float*>vg.ptr, <void*>vq.ptr,
                                   <void*>vs.ptr, lay, <moe12x_stream_t>s)
    check(st, "quantize_nvfp4")
    return q_out, scale_out


def _bench_parse(x, topk_ids, topk_weights, out, int n, int hidden, int top_k):
    """Host-cost probe: parses and validates the four per-call arrays n times."""
    cdef moe12x_config_t cfg
    moe12x_config_init(&cfg)
    cfg.hidden_size = hidden
    cfg.top_k = top_k
    cfg.device = -1
    cdef moe12x_inputs_t inp
    cdef int i
    for i in range(n):
        fill_inputs(&inp, &cfg, x, topk_ids, topk_weights, out, 0)
    return inp.num_tokens
