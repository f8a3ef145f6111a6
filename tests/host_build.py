"""Builds the CPU-side host programs of the tests (tests/host/*, tests/*.cu) with nvcc, skipping
the calling test when nvcc is absent: they are CUDA headers compiled for the host, no GPU needed."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def nvcc_or_skip(what: str) -> str:
    nvcc = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc")
    if not nvcc:
        pytest.skip(f"nvcc not found: {what} is a CUDA host program")
    return nvcc


def build(source: str, exe: str, *, includes: tuple[str, ...] = (), flags: tuple[str, ...] = (),
          what: str = "the check", timeout: int = 600) -> str:
    """Compiles tests/<source> (relative to tests/) with cpp/ and `includes` on the include path."""
    nvcc = nvcc_or_skip(what)
    cmd = [nvcc, "-std=c++17", *flags, "-I", os.path.join(ROOT, "cpp")]
    for inc in includes:
        cmd += ["-I", inc]
    subprocess.run(cmd + ["-o", exe, os.path.join(HERE, source)], check=True, timeout=timeout)
    return exe
