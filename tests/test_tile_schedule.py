"""CPU test (no GPU): the routed-tile arithmetic (an expert's last tile may take up to 32 rows past
128 on the SM90 wgmma path), the workspace layout with and without decoded activations, and the
TMA map per tile width, the decode kernels' warp-tile choice, the shared memory that spreads small
grouped launches over the SMs, as the host program tests/host/tile_schedule_test.cpp compiled with nvcc
(the CUDA headers only: cuda.h for the map type)."""
from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import host_build  # noqa: E402


def test_tile_schedule_and_workspace_layout(tmp_path):
    exe = host_build.build("host/tile_schedule_test.cpp", str(tmp_path / "tile_schedule_test"), flags=("-x", "c++"))
    out = subprocess.run([exe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all checks passed" in out.stdout.lower(), out.stdout
