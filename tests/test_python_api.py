"""CPU tests of pymoe's array layer: ingestion (DLPack capsules from NumPy, fake CUDA arrays via
__cuda_array_interface__), validation errors that name the argument, stream handling, and the
no-GPU statuses. Everything here runs without a GPU; valid calls reach the library, which must
answer MoeError(NO_DEVICE) cleanly."""
import numpy as np
import pytest

import pymoe

if pymoe._core is None:
    pytest.skip(f"pymoe extension not built: {pymoe._core_error}", allow_module_level=True)
if pymoe.device_count() > 0:
    pytest.skip("CPU-path tests: this machine has a GPU (the GPU suite covers it)", allow_module_level=True)

_core = pymoe._core
BASE = 0x7F0000000000  # fake, well aligned device address


class FakeCuda:
    """A device array as far as __cuda_array_interface__ says; nothing is ever dereferenced."""

    def __init__(self, shape, typestr, offset=0, strides=None, readonly=False, stream=None):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (BASE + offset, readonly),
                                         "version": 3, "strides": strides, "stream": stream}


BF16, F32, I32, I64, U8 = "<V2", "<f4", "<i4", "<i8", "|u1"
H, K = 256, 4


def arrays(T=3, **over):
    a = {"x": FakeCuda((T, H), BF16), "topk_ids": FakeCuda((T, K), I32), "topk_weights": FakeCuda((T, K), F32),
         "out": FakeCuda((T, H), BF16)}
    a.update(over)
    return a


def parse(**kw):
    a = arrays(**kw)
    return _core._bench_parse(a["x"], a["topk_ids"], a["topk_weights"], a["out"], 1, H, K)


def test_valid_arrays_parse():
    assert parse() == 3
    assert parse(topk_ids=FakeCuda((3, K), I64), topk_weights=FakeCuda((3, K), BF16)) == 3


@pytest.mark.parametrize("arg,bad,exc,words", [
    ("x", FakeCuda((3, H), F32), TypeError, "x: expected bfloat16, got float32"),
    ("topk_ids", FakeCuda((3, K), F32), TypeError, "topk_ids: expected int32 or int64"),
    ("topk_weights", FakeCuda((3, K), I32), TypeError, "topk_weights: expected float32 or bfloat16"),
    ("out", FakeCuda((3, H), F32), TypeError, "out: expected bfloat16"),
    ("x", FakeCuda((3, H + 64), BF16), ValueError, "x: expected shape"),
    ("topk_ids", FakeCuda((4, K), I32), ValueError, "topk_ids: expected shape [3, 4]"),
    ("out", FakeCuda((3, H, 1), BF16), ValueError, "out: expected 2 dimensions"),
    ("x", FakeCuda((3, H), BF16, strides=(4 * H, 2)), ValueError, "x: expected a C-contiguous array"),
    ("x", FakeCuda((3, H), BF16, offset=2), ValueError, "x: data pointer"),
    ("out", FakeCuda((3, H), BF16, offset=8), ValueError, "16-byte aligned"),
    ("topk_ids", FakeCuda((3, K), I64, offset=4), ValueError, "topk_ids: data pointer"),
    ("out", FakeCuda((3, H), BF16, readonly=True), ValueError, "out: the output array is read-only"),
    ("x", np.zeros((3, H), np.float32), ValueError, "x: expected a CUDA device array, got a CPU array"),
    ("topk_ids", [[1, 2, 3, 4]] * 3, TypeError, "topk_ids: expected a CUDA array"),
])
def test_bad_arrays_name_the_argument(arg, bad, exc, words):
    with pytest.raises(exc, match=None) as e:
        parse(**{arg: bad})
    assert words in str(e.value), str(e.value)


def test_dlpack_capsule_parsing_cpu_rejected_with_shape_known():
    # NumPy's __dlpack__ gives a real capsule: the parse reaches the device check.
    with pytest.raises(ValueError, match="CPU array"):
        parse(out=np.zeros((3, H), np.uint16))


def test_scale_bytes_and_versions():
    assert pymoe.scale_bytes(200, 80, "row_major") == 1000
    assert pymoe.scale_bytes(200, 80, "swizzled") == 256 * 8
    with pytest.raises(ValueError, match="layout"):
        pymoe.scale_bytes(2, 32, "bogus")
    assert pymoe.library_version() == 100
    assert pymoe.__version__ == "0.1.0"
    assert pymoe.device_count() == 0


def test_include_and_library_paths():
    import os
    assert os.path.exists(os.path.join(pymoe.get_include(), "moe12x", "moe12x.h"))
    assert os.path.exists(pymoe.get_library())


def test_streams():
    class CudaStream:
        def __cuda_stream__(self):
            return (0, 1234)

    class CupyLike:
        ptr = 5678

    a = arrays()
    for s in (None, 0, 7, CudaStream(), CupyLike()):
        with pytest.raises(pymoe.MoeError):  # valid stream forms reach the library
            pymoe.quantize_nvfp4(FakeCuda((4, 32), BF16), FakeCuda((1,), F32), FakeCuda((4, 16), U8),
                                 FakeCuda((4, 2), U8), stream=s)
    with pytest.raises(TypeError, match="stream"):
        pymoe.quantize_nvfp4(a["x"], FakeCuda((1,), F32), FakeCuda((3, H // 2), U8), FakeCuda((3, H // 16), U8),
                             stream="default")


def test_quantizer_validation():
    g = FakeCuda((1,), F32)
    with pytest.raises(ValueError, match="x: cols = 40"):
        pymoe.quantize_nvfp4(FakeCuda((4, 40), BF16), g, FakeCuda((4, 20), U8), FakeCuda((4, 2), U8))
    with pytest.raises(ValueError, match="scale_out: expected 8 bytes"):
        pymoe.quantize_nvfp4(FakeCuda((4, 32), BF16), g, FakeCuda((4, 16), U8), FakeCuda((4, 3), U8))
    with pytest.raises(ValueError, match="q_out: expected shape"):
        pymoe.quantize_nvfp4(FakeCuda((4, 32), BF16), g, FakeCuda((4, 8), U8), FakeCuda((4, 2), U8))
    with pytest.raises(ValueError, match="global_scale: expected one float32"):
        pymoe.quantize_nvfp4(FakeCuda((4, 32), BF16), FakeCuda((2,), F32), FakeCuda((4, 16), U8), FakeCuda((4, 2), U8))
    with pytest.raises(ValueError, match="scale_layout"):
        pymoe.quantize_nvfp4(FakeCuda((4, 32), BF16), g, FakeCuda((4, 16), U8), FakeCuda((4, 2), U8),
                             scale_layout="tiled")
    # a row stride larger than cols is accepted (reaches the library)
    with pytest.raises(pymoe.MoeError) as e:
        pymoe.quantize_nvfp4(FakeCuda((4, 32), BF16, strides=(128, 2)), g, FakeCuda((4, 16), U8),
                             FakeCuda((4, 2), U8))
    assert e.value.status_name == "MOE12X_ERROR_NO_DEVICE"


def weights(E=4, H_=128, I=64):
    return (FakeCuda((E, 2 * I, H_ // 2), U8), FakeCuda((E, 2 * I, H_ // 16), U8), FakeCuda((E,), F32),
            FakeCuda((E, H_, I // 2), U8), FakeCuda((E, H_, I // 16), U8), FakeCuda((E,), F32))


def test_prepare_weights_validation_then_no_device():
    w = list(weights())
    with pytest.raises(pymoe.MoeError) as e:
        pymoe.prepare_weights(*w)
    assert e.value.status_name == "MOE12X_ERROR_NO_DEVICE" and "no usable CUDA device" in str(e.value)
    bad = list(w)
    bad[3] = FakeCuda((4, 128, 16), U8)
    with pytest.raises(ValueError, match=r"w2: expected shape \[4, 128, 32\]"):
        pymoe.prepare_weights(*bad)
    bad = list(w)
    bad[2] = FakeCuda((4,), BF16)
    with pytest.raises(TypeError, match="w13_global_scale: expected float32"):
        pymoe.prepare_weights(*bad)
    with pytest.raises(ValueError, match="gate_up_order"):
        pymoe.prepare_weights(*w, gate_up_order="gate-up")
    bad = list(w)
    bad[1] = FakeCuda((4, 1000), U8)
    with pytest.raises(ValueError, match="w13_scale: swizzled scales need 4 x 1024 bytes"):
        pymoe.prepare_weights(*bad, scale_layout="swizzled")
    w[0] = FakeCuda((4, 128, 60), U8)  # H = 120: not a multiple of 64
    w[3] = FakeCuda((4, 120, 32), U8)
    w[1] = FakeCuda((4, 128, 7), U8)
    w[4] = FakeCuda((4, 120, 4), U8)
    with pytest.raises(pymoe.MoeError) as e:
        pymoe.prepare_weights(*w)
    assert "hidden_size = 120" in str(e.value)


def test_layer_construction_without_gpu_is_a_clean_error():
    with pytest.raises(pymoe.MoeError) as e:
        pymoe.MoELayer(*weights(), FakeCuda((1,), F32), FakeCuda((1,), F32), top_k=2, max_tokens=8)
    assert e.value.status_name == "MOE12X_ERROR_NO_DEVICE"


def test_device_array_without_gpu():
    with pytest.raises(pymoe.MoeError):
        pymoe.DeviceArray((2, 3))
    with pytest.raises(TypeError, match="dtype"):
        pymoe.DeviceArray((2, 3), "float16")


def test_reference_imports_without_extension_use():
    from pymoe import reference
    assert reference.scale_bytes(128, 64, "swizzled") == 128 * 4
