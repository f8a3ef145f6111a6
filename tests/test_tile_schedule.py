"""CPU test (no GPU): the routed-tile arithmetic (an expert's last tile may take up to 32 rows past
128 on the SM90 wgmma path), the workspace layout with and without decoded activations, and the
TMA map per tile width, as the host program tests/host/tile_schedule_test.cpp compiled with nvcc
(the CUDA headers only: cuda.h for the map type)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def test_tile_schedule_and_workspace_layout(tmp_path):
    nvcc = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc")
    if not nvcc:
        pytest.skip("nvcc not found: the check is a CUDA host program")
    exe = str(tmp_path / "tile_schedule_test")
    subprocess.run([nvcc, "-std=c++17", "-x", "c++", "-I", os.path.join(ROOT, "cpp"), "-o", exe,
                    os.path.join(HERE, "host", "tile_schedule_test.cpp")], check=True, timeout=300)
    out = subprocess.run([exe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all checks passed" in out.stdout.lower(), out.stdout
