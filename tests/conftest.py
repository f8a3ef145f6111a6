"""Shared pytest setup for moe12x.

- Tests run against the *installed* pymoe (``pip install .``): ``python -m pytest`` puts the
  repository root on sys.path, where ``pymoe/`` is the source folder without the compiled
  extension or libmoe12x.so. When an installed pymoe exists elsewhere, the root is dropped from
  sys.path so that ``import pymoe`` finds the installed package.
- ``gpu`` marker: tests that need a CUDA GPU and driver. They are skipped, with the reason, when
  pymoe cannot be imported or ``pymoe.device_count() == 0`` — except that an import failure on a
  machine that visibly has an NVIDIA GPU is NOT turned into a skip (a broken build must fail).
- Helpers: ``gpu_skip_reason()`` (None when a GPU is usable, else the reason) and the fixtures
  ``gpu_available`` (bool) and ``require_gpu`` (skips the test with the reason).
"""
from __future__ import annotations

import functools
import glob
import importlib.util
import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a or os.curdir, b)
    except OSError:
        return False


def _prefer_installed_pymoe() -> None:
    if "pymoe" in sys.modules:
        return
    rest = [p for p in sys.path if not _same_dir(p, REPO_ROOT)]
    if len(rest) == len(sys.path):
        return
    saved = sys.path[:]
    sys.path[:] = rest
    importlib.invalidate_caches()
    spec = importlib.util.find_spec("pymoe")
    if spec is None:  # not installed: keep the source tree importable (pure-Python parts work)
        sys.path[:] = saved
        importlib.invalidate_caches()


_prefer_installed_pymoe()


def _nvidia_device_visible() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*"))


@functools.lru_cache(maxsize=None)
def gpu_skip_reason() -> str | None:
    """None if pymoe imports and sees at least one CUDA device, else why GPU tests are skipped."""
    try:
        import pymoe
    except Exception as e:  # noqa: BLE001 - any import failure is a reason
        if _nvidia_device_visible():
            return None  # a GPU is there: let the tests fail loudly on the broken import
        return f"pymoe is not importable ({type(e).__name__}: {e})"
    try:
        n = pymoe.device_count()
    except Exception as e:  # noqa: BLE001
        if _nvidia_device_visible():
            return None
        return f"pymoe.device_count() failed ({type(e).__name__}: {e})"
    if n == 0:
        return "no CUDA GPU/driver: pymoe.device_count() == 0"
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU and driver (skipped with a reason otherwise)")


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    reason = gpu_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in gpu_items:
        item.add_marker(skip)


def pytest_report_header(config):
    reason = gpu_skip_reason()
    where = "?"
    spec = importlib.util.find_spec("pymoe")
    if spec is not None and spec.submodule_search_locations:
        where = list(spec.submodule_search_locations)[0]
    return [f"moe12x: pymoe from {where}; GPU tests: {'run' if reason is None else 'skipped (' + reason + ')'}"]


@pytest.fixture(scope="session")
def gpu_available() -> bool:
    return gpu_skip_reason() is None


@pytest.fixture
def require_gpu():
    reason = gpu_skip_reason()
    if reason is not None:
        pytest.skip(reason)
