"""The C ABI as a C user sees it, against the installed package (pip install .).

(a) include/moe12x/moe12x.h compiles as strict C99 and as C++;
(b) examples/ builds with CMake against the installed pymoe folder (pymoe/include +
    pymoe/libmoe12x.so) and runs: without a GPU it must report "no device" cleanly and print the
    expected statuses of the deliberate error paths; with one it must run the layer;
(c) libmoe12x.so exports only moe12x_* symbols, and the extension finds it through $ORIGIN.

Sub-tests skip (with the reason) only when a needed tool (cc, c++, cmake, nm, readelf) is missing.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_INCLUDE = os.path.join(REPO, "include")
EXAMPLES = os.path.join(REPO, "examples")

# Symbols the static linker itself may define in a shared object's dynamic table.
LINKER_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start"}

EXPORTED_API = {
    "moe12x_get_version", "moe12x_status_string", "moe12x_get_last_error", "moe12x_config_init",
    "moe12x_config_check", "moe12x_scale_bytes", "moe12x_prepared_weights_size",
    "moe12x_prepare_weights", "moe12x_workspace_size", "moe12x_run", "moe12x_quantize_nvfp4",
    "moe12x_select_schedule", "moe12x_device_count", "moe12x_device_malloc", "moe12x_device_free",
    "moe12x_memcpy", "moe12x_stream_synchronize",
}


def _tool(*names):
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    return None


def _run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 600)
    return subprocess.run(cmd, **kw)


def _check(proc, what):
    assert proc.returncode == 0, (
        f"{what} failed (exit {proc.returncode}): {' '.join(map(str, proc.args))}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    return proc


# ---- locating the installed package ----------------------------------------------------------
def _package_dir():
    spec = importlib.util.find_spec("pymoe")
    assert spec is not None and spec.submodule_search_locations, "pymoe is not installed (pip install .)"
    return list(spec.submodule_search_locations)[0]


@pytest.fixture(scope="module")
def installed():
    """(include_dir, library_path) of the installed package."""
    try:
        import pymoe
        inc, lib = pymoe.get_include(), pymoe.get_library()
    except Exception:  # noqa: BLE001 - fall back to the package folder itself
        pkg = _package_dir()
        inc, lib = os.path.join(pkg, "include"), os.path.join(pkg, "libmoe12x.so")
    assert os.path.isfile(os.path.join(inc, "moe12x", "moe12x.h")), f"installed header missing under {inc}"
    assert os.path.isfile(lib), f"installed library missing: {lib} (pip install . first)"
    return inc, lib


# ---- (a) the header compiles as C99 and C++ --------------------------------------------------
C_TU = r"""
#include <moe12x/moe12x.h>
#include <stdio.h>
#if MOE12X_VERSION != MOE12X_VERSION_MAJOR * 10000 + MOE12X_VERSION_MINOR * 100 + MOE12X_VERSION_PATCH
#error "version macros disagree"
#endif
int use_api(void);
int use_api(void) {
  moe12x_config_t cfg;
  moe12x_weights_t w;
  moe12x_inputs_t in;
  moe12x_stream_t stream = NULL;
  size_t bytes = 0;
  moe12x_status_t (*run)(const moe12x_config_t*, const void*, const moe12x_inputs_t*, void*, size_t,
                         moe12x_stream_t) = moe12x_run;
  moe12x_config_init(&cfg);
  (void)w; (void)in; (void)stream; (void)run;
  if (moe12x_workspace_size(&cfg, 1, &bytes) != MOE12X_SUCCESS)
    printf("%s: %s\n", moe12x_status_string(MOE12X_ERROR_INVALID_ARGUMENT), moe12x_get_last_error());
  return (int)sizeof(moe12x_config_t) + MOE12X_ACT_QUANT_NONE + MOE12X_SCHEDULE_DYNAMIC +
         MOE12X_SCALE_SWIZZLED_128x4 + MOE12X_GATE_UP + MOE12X_DTYPE_BFLOAT16;
}
"""

CXX_TU = r"""
#include <moe12x/moe12x.h>
#include <type_traits>
static_assert(std::is_standard_layout<moe12x_config_t>::value, "C layout");
static_assert(std::is_trivially_copyable<moe12x_inputs_t>::value, "C layout");
extern "C" int use_api_cxx() {
  moe12x_config_t cfg{};
  moe12x_config_init(&cfg);
  return moe12x_config_check(&cfg) == MOE12X_SUCCESS ? 0 : 1;
}
"""


@pytest.mark.parametrize("std", ["c99", "c11"])
def test_header_compiles_as_c(tmp_path, std):
    cc = _tool("cc", "gcc", "clang")
    if cc is None:
        pytest.skip("no C compiler (cc/gcc/clang) on PATH")
    src = tmp_path / "tu.c"
    src.write_text(C_TU)
    _check(_run([cc, f"-std={std}", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", REPO_INCLUDE,
                 "-c", str(src), "-o", str(tmp_path / "tu.o")]), f"cc -std={std}")


@pytest.mark.parametrize("std", ["c++11", "c++17"])
def test_header_compiles_as_cxx(tmp_path, std):
    cxx = _tool("c++", "g++", "clang++")
    if cxx is None:
        pytest.skip("no C++ compiler (c++/g++/clang++) on PATH")
    src = tmp_path / "tu.cpp"
    src.write_text(CXX_TU)
    _check(_run([cxx, f"-std={std}", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", REPO_INCLUDE,
                 "-c", str(src), "-o", str(tmp_path / "tu.o")]), f"c++ -std={std}")


def test_installed_header_matches_source(installed):
    inc, _ = installed
    with open(os.path.join(inc, "moe12x", "moe12x.h"), "rb") as f:
        got = f.read()
    with open(os.path.join(REPO_INCLUDE, "moe12x", "moe12x.h"), "rb") as f:
        want = f.read()
    assert got == want, "the installed moe12x.h differs from include/moe12x/moe12x.h (reinstall)"


# ---- (b) the C example, built with CMake against the installed package ------------------------
@pytest.fixture(scope="module")
def example_output(installed, tmp_path_factory):
    cmake = _tool("cmake")
    cc = _tool("cc", "gcc", "clang")
    if cmake is None or cc is None:
        pytest.skip(f"needs cmake and a C compiler (cmake: {cmake}, cc: {cc})")
    inc, lib = installed
    root = os.path.dirname(lib)  # the pymoe folder: include/moe12x/moe12x.h + libmoe12x.so
    assert os.path.samefile(os.path.dirname(inc), root) or os.path.isfile(
        os.path.join(root, "include", "moe12x", "moe12x.h")), (inc, lib)
    build = tmp_path_factory.mktemp("example-build")
    gen = ["-G", "Ninja"] if _tool("ninja") else []
    _check(_run([cmake, "-S", EXAMPLES, "-B", str(build), *gen, f"-DMOE12X_ROOT={root}",
                 f"-DCMAKE_C_COMPILER={cc}", "-DCMAKE_BUILD_TYPE=Release"]), "cmake configure examples/")
    _check(_run([cmake, "--build", str(build)]), "cmake --build examples/")
    exe = build / "moe12x_example"
    assert exe.exists(), f"{exe} not built"
    dump = tmp_path_factory.mktemp("example-dump")
    proc = _run([str(exe)], timeout=300, env=dict(os.environ, MOE12X_EXAMPLE_DUMP=str(dump)))
    proc.dump_dir = dump
    return proc


def test_example_matches_python_bitwise(example_output):
    """With a GPU: the C example's call, repeated from Python (torch tensors) on the very same
    inputs, gives a bitwise identical output."""
    import numpy as np
    import pymoe
    if pymoe.device_count() == 0:
        pytest.skip("no CUDA device: the example did not run the layer")
    torch = pytest.importorskip("torch")
    d = example_output.dump_dir
    load = lambda name, dt: np.fromfile(os.path.join(d, name + ".bin"), dtype=dt)
    E, K, H, I, T = 8, 2, 256, 128, 16  # examples/moe12x_example.c
    cu = lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()
    w13 = cu(load("w13", np.uint8).reshape(E, 2 * I, H // 2))
    w13_sf = cu(load("w13_sf", np.uint8).reshape(E, 2 * I, H // 16))
    w2 = cu(load("w2", np.uint8).reshape(E, H, I // 2))
    w2_sf = cu(load("w2_sf", np.uint8).reshape(E, H, I // 16))
    gs = torch.ones(E, device="cuda")
    x = cu(load("x", np.int16).reshape(T, H)).view(torch.bfloat16)
    ids = cu(load("ids", np.int32).reshape(T, K))
    wts = cu(load("wts", np.float32).reshape(T, K))
    c_out = load("out", np.uint16).reshape(T, H)
    w = pymoe.prepare_weights(w13, w13_sf, gs, w2, w2_sf, gs)
    one = torch.ones(1, device="cuda")
    out = torch.full((T, H), float("nan"), dtype=torch.bfloat16, device="cuda")
    pymoe.fused_moe(x, ids, wts, w, one, one, out=out)
    torch.cuda.synchronize()
    assert np.array_equal(out.view(torch.int16).cpu().numpy().view(np.uint16), c_out)


def _status_of(out, label):
    m = re.search(r"^" + re.escape(label) + r"\s+(MOE12X_[A-Z_]+)", out, re.M)
    assert m, f"no line '{label} ...' in the example's output:\n{out}"
    return m.group(1)


def test_example_runs(example_output):
    out = example_output.stdout
    assert example_output.returncode == 0, (
        f"moe12x_example exited {example_output.returncode}\n{out}\n{example_output.stderr}")
    assert "RESULT: OK" in out, out
    assert "UNEXPECTED" not in out, out
    m = re.search(r"library version (\d+)", out)
    assert m and int(m.group(1)) == 100, out  # 0.1.0
    for label in ("config_check", "prepared_weights_size", "workspace_size", "device_count"):
        assert _status_of(out, label) == "MOE12X_SUCCESS", out


def test_example_error_paths(example_output):
    out = example_output.stdout
    assert _status_of(out, "error: config_check(NULL)") == "MOE12X_ERROR_INVALID_ARGUMENT"
    assert _status_of(out, "error: workspace_size(NULL)") == "MOE12X_ERROR_INVALID_ARGUMENT"
    assert _status_of(out, "error: top_k = 0") in ("MOE12X_ERROR_UNSUPPORTED_SHAPE",
                                                   "MOE12X_ERROR_INVALID_ARGUMENT")
    assert _status_of(out, "error: hidden_size = 200") == "MOE12X_ERROR_UNSUPPORTED_SHAPE"
    assert _status_of(out, "error: prepared_size(H = 200)") == "MOE12X_ERROR_UNSUPPORTED_SHAPE"
    assert _status_of(out, "error: scale_bytes(k = 17)") == "MOE12X_ERROR_INVALID_ARGUMENT"
    # every error line carries the library's last-error detail, naming the argument
    assert re.search(r"^error: config_check\(NULL\)\s+\S+ \(config: .+\)$", out, re.M), out
    assert re.search(r"^error: top_k = 0\s+\S+ \(.*top_k.*\)$", out, re.M), out
    assert re.search(r"^error: hidden_size = 200\s+\S+ \(.*hidden_size.*\)$", out, re.M), out


def test_example_device_paths(example_output):
    out = example_output.stdout
    m = re.search(r"^device_count = (\d+)$", out, re.M)
    assert m, out
    if int(m.group(1)) == 0:
        # no GPU: calls needing one refuse cleanly (argument errors first, then NO_DEVICE)
        assert _status_of(out, "prepare_weights(NULL pointers)") == "MOE12X_ERROR_INVALID_ARGUMENT"
        assert _status_of(out, "prepare_weights(dummy pointers)") == "MOE12X_ERROR_NO_DEVICE"
        assert _status_of(out, "run(NULL inputs)") == "MOE12X_ERROR_INVALID_ARGUMENT"
        assert _status_of(out, "run(dummy pointers)") == "MOE12X_ERROR_NO_DEVICE"
        assert "no CUDA device: skipped the GPU run" in out
    else:
        assert _status_of(out, "prepare_weights") == "MOE12X_SUCCESS", out
        assert _status_of(out, "run") == "MOE12X_SUCCESS", out
        assert re.search(r"^output: .* 0 NaN/Inf$", out, re.M), out


# ---- (c) exported symbols and the extension's link to the library -----------------------------
def test_library_exports_only_c_api(installed):
    nm = _tool("nm")
    if nm is None:
        pytest.skip("nm (binutils) not on PATH")
    _, lib = installed
    proc = _check(_run([nm, "-D", "--defined-only", lib]), "nm -D")
    names = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            names.add(parts[-1].split("@")[0])
    unexpected = sorted(n for n in names if not n.startswith("moe12x_") and n not in LINKER_SYMBOLS)
    assert not unexpected, f"libmoe12x.so exports non-API symbols: {unexpected[:40]}"
    missing = sorted(EXPORTED_API - names)
    assert not missing, f"C API functions not exported: {missing}"


def test_library_runtime_dependencies(installed):
    readelf = _tool("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) not on PATH")
    _, lib = installed
    dyn = _check(_run([readelf, "-d", lib]), "readelf -d").stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dyn)
    assert not [n for n in needed if "cudart" in n], f"cudart must be linked statically: {needed}"
    assert not [n for n in needed if n.startswith("libcuda.so")], \
        f"libcuda must not be a link-time dependency (cudart dlopens it): {needed}"


def test_extension_finds_library_via_origin(installed):
    readelf = _tool("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) not on PATH")
    _, lib = installed
    exts = glob.glob(os.path.join(os.path.dirname(lib), "_core*.so"))
    assert exts, f"no pymoe/_core*.so beside {lib}"
    dyn = _check(_run([readelf, "-d", exts[0]]), "readelf -d").stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dyn)
    assert "libmoe12x.so" in needed, f"{exts[0]} does not link libmoe12x.so by name: {needed}"
    rpath = re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[(.+?)\]", dyn)
    assert rpath and "$ORIGIN" in rpath[0].split(":"), f"extension RUNPATH/RPATH is {rpath}, want $ORIGIN"
    # and it loads from a fresh interpreter, resolving libmoe12x.so beside itself
    code = ("import pymoe, sys; from pymoe import _core; "
            "print(pymoe.library_version(), pymoe.device_count())")
    proc = _run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(lib)))
    _check(proc, "import pymoe._core")
    assert proc.stdout.split()[0] == "100", proc.stdout
