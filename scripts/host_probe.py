"""Where does the host time of one layer call go? Times each piece on the GPU machine."""
import time

import torch

import pymoe
from pymoe import _core


def per_call(fn, n=2000):
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


x = torch.randn(1, 2048, device="cuda").to(torch.bfloat16)
ids = torch.zeros(1, 8, dtype=torch.int32, device="cuda")
w = torch.ones(1, 8, device="cuda")
out = torch.empty(1, 2048, dtype=torch.bfloat16, device="cuda")
print(f"x.__dlpack__(stream=1, max_version=(1,1)): {per_call(lambda: x.__dlpack__(stream=1, max_version=(1, 1))):.2f} us")
print(f"x.__dlpack__(stream=None): {per_call(lambda: x.__dlpack__(stream=None)):.2f} us")
print(f"x.__dlpack__(stream=-1): {per_call(lambda: x.__dlpack__(stream=-1)):.2f} us")
print(f"x.__dlpack_device__(): {per_call(lambda: x.__dlpack_device__()):.2f} us")
print(f"x.data_ptr(): {per_call(lambda: x.data_ptr()):.2f} us")
print(f"hasattr __dlpack_c_exchange_api__: {hasattr(type(x), '__dlpack_c_exchange_api__')}")
print(f"_bench_parse 4 arrays: {per_call(lambda: _core._bench_parse(x, ids, w, out, 1, 2048, 8)):.2f} us")
try:
    import cupy as cp
    cx = cp.asarray(x.float().cpu().numpy()).astype(cp.float32)
    print(f"cupy __dlpack__: {per_call(lambda: cx.__dlpack__(stream=1)):.2f} us")
except Exception as e:
    print("cupy:", e)
