"""CPU test (no GPU): the prepared code-word bit order (cpp/common/nvfp4.cuh) gives A registers
bit-identical to the previous layout, and the prepared FP4 activation words of the SM90 wgmma
kernel (prepare_act_word) decode to act_code_pair's bits. Compiles the host program tests/dequant_layout_check.cu with
nvcc; skipped when nvcc is absent. MOE12X_LAYOUT_FULL=1 checks all 2^32 code words (about a
minute on one core); the default checks every byte value of every register plus 4M random words."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def test_prepared_layout_bit_identical(tmp_path):
    nvcc = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc")
    if not nvcc:
        pytest.skip("nvcc not found: the layout check is a CUDA host program")
    exe = str(tmp_path / "dequant_layout_check")
    subprocess.run([nvcc, "-O2", "-std=c++17", "-I", os.path.join(ROOT, "cpp"), "-o", exe,
                    os.path.join(HERE, "dequant_layout_check.cu")], check=True)
    args = [exe] + (["full"] if os.environ.get("MOE12X_LAYOUT_FULL") == "1" else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith(": OK"), out.stdout
