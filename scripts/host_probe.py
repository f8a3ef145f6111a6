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

# Per-call host time of the layer object: Python -> C -> launch(es), T=1, tiny shape so the GPU
# keeps up; measured with perf_counter over many calls, synchronizing only at the ends.
E, H, I, k = 8, 256, 128, 2
g = torch.Generator(device="cuda").manual_seed(0)
w13 = torch.randint(0, 256, (E, 2 * I, H // 2), dtype=torch.uint8, device="cuda", generator=g)
s13 = torch.randint(0x28, 0x38, (E, 2 * I, H // 16), dtype=torch.uint8, device="cuda", generator=g)
w2 = torch.randint(0, 256, (E, H, I // 2), dtype=torch.uint8, device="cuda", generator=g)
s2 = torch.randint(0x28, 0x38, (E, H, I // 16), dtype=torch.uint8, device="cuda", generator=g)
gs = torch.full((E,), 0.02, device="cuda")
sc = torch.tensor([0.01], device="cuda")
x = torch.randn(1, H, device="cuda").to(torch.bfloat16)
ids = torch.tensor([[1, 5]], dtype=torch.int32, device="cuda")
w = torch.ones(1, k, device="cuda")
out = torch.empty(1, H, dtype=torch.bfloat16, device="cuda")
for sched in ("static", "dynamic"):
    layer = pymoe.MoELayer(w13, s13, gs, w2, s2, gs, sc, sc, top_k=k, max_tokens=16, schedule=sched)
    for _ in range(100):
        layer(x, ids, w, out)
    torch.cuda.synchronize()
    # Bursts of 100 calls stay far below the launch-queue depth, so the host never waits for the
    # GPU inside a burst: the burst time over 100 is the host cost per call.
    bursts = []
    for _ in range(30):
        t = time.perf_counter()
        for _ in range(100):
            layer(x, ids, w, out)
        bursts.append((time.perf_counter() - t) / 100 * 1e6)
        torch.cuda.synchronize()
    bursts.sort()
    print(f"MoELayer call ({sched}): host {bursts[len(bursts) // 2]:.2f} us per call (median of 30 bursts of 100; "
          f"min {bursts[0]:.2f})")
x0 = torch.empty(0, H, device="cuda", dtype=torch.bfloat16)
print(f"MoELayer call T=0 (parse + validate, no launch): "
      f"{per_call(lambda: layer(x0, ids[:0], w[:0], out[:0])):.2f} us")
print(f"_bench_parse 4 torch arrays: {per_call(lambda: _core._bench_parse(x, ids, w, out, 1, H, k)):.2f} us")
