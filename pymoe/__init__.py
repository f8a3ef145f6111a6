"""pymoe: Python bindings of moe12x, the fused NVFP4 Mixture-of-Experts library.

Arrays are any objects with __dlpack__ or __cuda_array_interface__ (torch, CuPy, JAX, Numba);
the package imports none of those frameworks. See docs/python-api.md.

`pymoe.reference` (NumPy only) imports even where the compiled extension cannot load.
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
except ImportError as _e:  # not built, or libmoe12x.so missing: the reference still works
    _core, _core_error = None, _e
    _installed = _installed_package_dir()
    if _installed is not None:  # a checkout shadows the installed package: use its binaries
        import importlib as _importlib
        __path__.append(_installed)
        _importlib.invalidate_caches()
        try:
            _core = _importlib.import_module(__name__ + "._core")
            _here = _installed
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


_EXPORTS = ("MoeError", "DeviceArray", "DeviceBuffer", "PreparedWeights", "MoELayer", "fused_moe",
            "quantize_nvfp4", "scale_bytes", "library_version", "device_count", "select_schedule",
            "clear_workspace_cache")


def prepare_weights(w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale, *, num_experts=None,
                    local_expert_offset=0, scale_layout="row_major", gate_up_order="up_gate", stream=None):
    """Canonical NVFP4 weights of the local experts -> pymoe.PreparedWeights (device memory)."""
    return _require().PreparedWeights(w13, w13_scale, w13_global_scale, w2, w2_scale, w2_global_scale,
                                      num_experts=num_experts, local_expert_offset=local_expert_offset,
                                      scale_layout=scale_layout, gate_up_order=gate_up_order, stream=stream)


def _require():
    if _core is None:
        raise ImportError(f"pymoe's compiled extension is unavailable ({_core_error}); "
                          "install the package with `pip install .`")
    return _core


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(_require(), name)
    if name == "reference":
        import importlib
        return importlib.import_module(__name__ + ".reference")
    raise AttributeError(f"module 'pymoe' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS) + ["reference"])
