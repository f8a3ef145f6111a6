"""CPU test (no GPU): the prepared code-word bit order (cpp/common/nvfp4.cuh) gives A registers
bit-identical to the previous layout, and the prepared FP4 activation words (prepare_act_word:
the SM90 wgmma kernel's token form in v17-v20, still the ladder's) decode to act_code_pair's bits. Compiles the host program tests/dequant_layout_check.cu with
nvcc; skipped when nvcc is absent. MOE12X_LAYOUT_FULL=1 checks all 2^32 code words (about a
minute on one core); the default checks every byte value of every register plus 4M random words."""
from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import host_build  # noqa: E402


def test_prepared_layout_bit_identical(tmp_path):
    exe = host_build.build("dequant_layout_check.cu", str(tmp_path / "dequant_layout_check"), flags=("-O2",),
                           what="the layout check")
    args = [exe] + (["full"] if os.environ.get("MOE12X_LAYOUT_FULL") == "1" else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith(": OK"), out.stdout
