"""CPU tests (no GPU) of fragment and shared-memory mappings against CuTe's own layouts, as host
programs under tests/host/ compiled with nvcc and the CUTLASS 4.2 headers: MOE12X_CUTLASS_DIR (a
CUTLASS tree), else the nvidia-cutlass wheel if importable; skipped without them (the package build
uses the wheel only inside its isolated build environment).
- wgmma_layout_test.cu: the SM90a wgmma kernel (cpp/mainloop/sm90_wgmma_fp4.cuh, activation_stage.cuh):
  A and C fragments vs mma.sync's (the epilogues are shared), the SW128 K-major token stage, the
  descriptor fields.
- sm120_fp4_layout_test.cu: the SM120 block-scaled FP4 MMA's A / B / scale-factor / C fragments, the
  facts a native SM120 mainloop would build on (nothing of it is built yet).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import host_build  # noqa: E402


def _cutlass_include() -> str | None:
    root = os.environ.get("MOE12X_CUTLASS_DIR")
    if not root:
        spec = importlib.util.find_spec("cutlass_library")  # locate without importing (heavy deps)
        if spec is None or not spec.submodule_search_locations:
            return None
        root = os.path.join(list(spec.submodule_search_locations)[0], "source")
    inc = os.path.join(root, "include")
    return inc if os.path.exists(os.path.join(inc, "cute", "tensor.hpp")) else None


@pytest.mark.parametrize("program", ["wgmma_layout_test", "sm120_fp4_layout_test"])
def test_layouts_match_cute(program, tmp_path):
    host_build.nvcc_or_skip("the layout checks")
    inc = _cutlass_include()
    if not inc:
        pytest.skip("CUTLASS headers not found: set MOE12X_CUTLASS_DIR or pip install nvidia-cutlass==4.2.0.0")
    exe = host_build.build(f"host/{program}.cu", str(tmp_path / program), includes=(inc,),
                           flags=("--expt-relaxed-constexpr",), what="the layout checks")
    out = subprocess.run([exe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all checks passed" in out.stdout.lower(), out.stdout
