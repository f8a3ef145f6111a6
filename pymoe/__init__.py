"""pymoe: Python bindings of moe12x, the fused NVFP4 Mixture-of-Experts library.

Arrays are any objects with __dlpack__ (or the DLPack C exchange API) or
__cuda_array_interface__ (torch, CuPy, JAX, Numba); the package imports none of those
frameworks. See docs/python-api.md.

`pymoe.reference` (NumPy only) imports even where the compiled extension cannot load: the
extension is imported here inside a try block, and the names that need it raise ImportError
(with the reason) only when used.
"""
import os as _os

__version__ = "0.1.0"

_here = _os.path.dirname(_os.path.abspath(__file__))


def _installed_package_dir():
    """The installed pymoe folder, when this one is a source checkout (e.g. `python -m pymoe.demo`
    run from the repository root puts the checkout first on sys.path)."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution
        path = _os.path.abspath(str(distribution("moe12x").locate_file("pymoe")))
    except (ImportError, PackageNotFoundError):
        return None
    return path if _os.path.isdir(path) and path != _here else None


try:
    from . import _core
    _core_error = None
except ImportError as _e:  # not built, or libmoe12x.so missing: the reference still works
    _core, _core_error = None, _e
    _installed = _installed_package_dir()
    if _installed is not None:  # a checkout shadows the installed package: use its binaries
        import importlib as _importlib
        __path__.append(_installed)
        _importlib.invalidate_caches()
        try:
            _core = _importlib.import_module(__name__ + "._core")
            _here, _core_error = _installed, None
        except ImportError as _e2:
            _core, _core_error = None, _e2


def get_include():
    """Folder holding moe12x/moe12x.h (for C users building against the installed library)."""
    for path in (_os.path.join(_here, "include"), _os.path.join(_os.path.dirname(_here), "include")):
        if _os.path.exists(_os.path.join(path, "moe12x", "moe12x.h")):
            return path
    raise FileNotFoundError("moe12x/moe12x.h not found next to the pymoe package")


def get_library():
    """Path of libmoe12x.so."""
    path = _os.path.join(_here, "libmoe12x.so")
    if not _os.path.exists(path):
        raise FileNotFoundError(f"{path} not found (is pymoe installed with `pip install .`?)")
    return path


_EXPORTS = ("MoeError", "MoeValueError", "DeviceArray", "DeviceBuffer", "PreparedWeights", "MoELayer",
            "fused_moe", "quantize_nvfp4", "scale_bytes", "library_version", "header_version",
            "device_count", "select_schedule", "workspace_size", "clear_workspace_cache")

__all__ = ["__version__", "get_include", "get_library", "prepare_weights", "reference", *_EXPORTS]


def prepare_weights(w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale, *, num_experts=None,
                    local_expert_offset=0, scale_layout="row_major", gate_up_order="up_gate", stream=None):
    """Canonical NVFP4 weights of the local experts -> pymoe.PreparedWeights (device memory owned
    by the returned object). Shapes: w13 uint8 [E_local, 2I, H/2], w13_scale uint8
    [E_local, 2I, H/16] (row_major) or scale_bytes(2I, H, "swizzled") bytes per expert,
    w13_global_scale fp32 [E_local], w2 uint8 [E_local, H, I/2], w2_scale like w13_scale,
    w2_global_scale fp32 [E_local]. fp8 e4m3fn / float4_e2m1fn_x2 dtypes are taken as bytes."""
    return _require().PreparedWeights(w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale,
                                      num_experts=num_experts, local_expert_offset=local_expert_offset,
                                      scale_layout=scale_layout, gate_up_order=gate_up_order, stream=stream)


def _require():
    if _core is None:
        raise ImportError(f"pymoe's compiled extension (pymoe._core with libmoe12x.so) is unavailable "
                          f"({_core_error}); install the package with `pip install .` "
                          "(pymoe.reference works without it)")
    return _core


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(_require(), name)
    if name == "reference":
        import importlib
        return importlib.import_module(__name__ + ".reference")
    raise AttributeError(f"module 'pymoe' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | {"reference"})
