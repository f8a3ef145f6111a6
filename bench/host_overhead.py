#!/usr/bin/env python3
"""Per-call host overhead of pymoe (SPEC §5: "a measured figure; it matters at decode").

  python bench/host_overhead.py            # print µs figures
  python bench/host_overhead.py --write    # ... and write bench/results/host-overhead-<date>-<machine>.json

(a) Ingestion + validation, no GPU needed: the four per-call arrays (x, topk_ids, topk_weights,
    out) parsed and checked exactly as MoELayer.__call__ does, through the private probes
    pymoe._core._bench_parse / _bench_ingest, for each producer kind that exists here:
    fake __cuda_array_interface__ objects, pymoe.DeviceArray (pymoe's own DLPack exporter, borrowed
    fake memory), NumPy capsules (a real producer's __dlpack__, host memory), and with a GPU: torch
    tensors (DLPack C exchange API), torch behind __dlpack__ only, torch behind the CAI only, CuPy.
    If cuda.core is importable, its StridedMemoryView per-array cost is measured on the same
    objects (the alternative we did not take).
(b) With a GPU and torch: MoELayer.__call__ on a tiny layer (T=1), timed two ways:
    - loop: 10k calls, torch.cuda.synchronize() only at the ends (launch-inclusive host time; it
      turns into GPU time if the kernels are slower than the host, which is why we also give)
    - burst: bursts of 50 calls (below the launch-queue depth) with a synchronize between bursts
      that is not timed: the host cost of a call, launch included.
    The same for fused_moe, and for CuPy arrays when CuPy is importable.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _import_pymoe():
    # prefer the installed package (the checkout's pymoe/ has no compiled extension)
    root = os.path.dirname(HERE)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
    import pymoe
    if pymoe._core is None:
        sys.exit(f"pymoe extension unavailable: {pymoe._core_error}")
    return pymoe


pymoe = _import_pymoe()
_core = pymoe._core
BASE = 0x7F0000000000


def per_call_us(fn, n: int, repeat: int = 5) -> float:
    """Best of `repeat` runs of fn(n) (fn loops n times inside C), in µs per iteration."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


def per_call_py_us(fn, n: int, repeat: int = 5) -> float:
    def loop(k):
        for _ in range(k):
            fn()
    return per_call_us(loop, n, repeat)


class FakeCAI:
    def __init__(self, shape, typestr):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (BASE, False),
                                         "version": 3, "strides": None, "stream": None}


class DLPackOnly:
    def __init__(self, t):
        self._t = t

    def __dlpack__(self, *a, **k):
        return self._t.__dlpack__(*a, **k)

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


class CAIOnly:
    def __init__(self, t):
        self._t = t

    @property
    def __cuda_array_interface__(self):
        return self._t.__cuda_array_interface__


def smv_cost(objs, n: int):
    """cuda.core StridedMemoryView per-array cost (None when cuda.core is missing)."""
    try:
        from cuda.core.utils import StridedMemoryView
    except Exception as e:  # noqa: BLE001
        return None, f"cuda.core unavailable: {type(e).__name__}: {e}"
    import warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # the constructor form is deprecated in 1.x
    out = {}
    for name, o in objs.items():
        dl = hasattr(o, "__dlpack__") and hasattr(StridedMemoryView, "from_dlpack")
        make = StridedMemoryView.from_dlpack if dl else StridedMemoryView
        try:
            make(o, stream_ptr=-1)
            out[name] = per_call_py_us(lambda: make(o, stream_ptr=-1), n)
        except Exception as e:  # noqa: BLE001
            out[name] = f"{type(e).__name__}: {e}"
    return out, None


def cpu_part(H=2048, K=8, n=100_000):
    res = {}
    four = dict(x=FakeCAI((1, H), "<V2"), ids=FakeCAI((1, K), "<i4"), w=FakeCAI((1, K), "<f4"),
                out=FakeCAI((1, H), "<V2"))
    res["fake_cai_4_arrays_us"] = per_call_us(
        lambda k: _core._bench_parse(four["x"], four["ids"], four["w"], four["out"], k, H, K), n)
    res["fake_cai_1_array_us"] = per_call_us(lambda k: _core._bench_ingest(four["x"], k), n)
    da = dict(x=pymoe.DeviceArray._borrow(BASE, (1, H), "bfloat16"),
              ids=pymoe.DeviceArray._borrow(BASE, (1, K), "int32"),
              w=pymoe.DeviceArray._borrow(BASE, (1, K), "float32"),
              out=pymoe.DeviceArray._borrow(BASE, (1, H), "bfloat16"))
    res["devicearray_dlpack_4_arrays_us"] = per_call_us(
        lambda k: _core._bench_parse(da["x"], da["ids"], da["w"], da["out"], k, H, K), n)
    res["devicearray_dlpack_1_array_us"] = per_call_us(lambda k: _core._bench_ingest(da["x"], k), n)
    a = np.zeros((1, H), np.float32)
    res["numpy_dlpack_capsule_1_array_us"] = per_call_us(lambda k: _core._bench_ingest(a, k, None, True), n)
    res["numpy___dlpack___alone_us"] = per_call_py_us(lambda: a.__dlpack__(max_version=(1, 1)), n)
    res["empty_python_call_us"] = per_call_py_us(lambda: None, n)
    return res


def gpu_part(n_loop=10_000, burst=50, bursts=200):
    import torch
    res = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name()}
    dev = "cuda"
    E, H, I, K, T = 8, 256, 128, 2, 1
    g = torch.Generator(device=dev).manual_seed(0)
    w13 = torch.randint(0, 256, (E, 2 * I, H // 2), dtype=torch.uint8, device=dev, generator=g)
    w2 = torch.randint(0, 256, (E, H, I // 2), dtype=torch.uint8, device=dev, generator=g)
    s13 = torch.full((E, 2 * I, H // 16), 0x30, dtype=torch.uint8, device=dev)
    s2 = torch.full((E, H, I // 16), 0x30, dtype=torch.uint8, device=dev)
    gs = torch.ones(E, device=dev)
    fc = torch.ones(1, device=dev)
    x = torch.randn(T, H, device=dev).to(torch.bfloat16)
    ids = torch.randint(0, E, (T, K), dtype=torch.int32, device=dev)
    tw = torch.full((T, K), 0.5, device=dev)
    out = torch.empty(T, H, dtype=torch.bfloat16, device=dev)
    res["exchange_api"] = _core._exchange_api_version(x)

    # (a) ingestion on real producers
    ing = {}
    ing["torch_4_arrays_us"] = per_call_us(lambda k: _core._bench_parse(x, ids, tw, out, k, H, K), 20_000)
    ing["torch_1_array_us"] = per_call_us(lambda k: _core._bench_ingest(x, k), 20_000)
    s_cur = torch.cuda.current_stream().cuda_stream
    ing["torch_dlpack_only_4_arrays_us"] = per_call_us(
        lambda k: _core._bench_parse(DLPackOnly(x), DLPackOnly(ids), DLPackOnly(tw), DLPackOnly(out), k, H, K,
                                     s_cur), 2_000)
    ing["torch_cai_only_3_arrays_plus_dlpack_x_us"] = per_call_us(
        lambda k: _core._bench_parse(x, CAIOnly(ids), CAIOnly(tw), out, k, H, K), 5_000)
    ing["torch___dlpack___alone_us"] = per_call_py_us(lambda: x.__dlpack__(stream=1, max_version=(1, 1)), 2_000)
    smv, why = smv_cost({"torch": x, "torch_cai": CAIOnly(x)}, 5_000)
    ing["cuda_core_StridedMemoryView_1_array_us"] = smv if smv is not None else why
    res["ingest"] = ing

    # (b) whole calls
    def timed(fn):
        fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n_loop):
            fn()
        torch.cuda.synchronize()
        loop = (time.perf_counter() - t) / n_loop * 1e6
        per = []
        for _ in range(bursts):
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(burst):
                fn()
            per.append((time.perf_counter() - t) / burst * 1e6)
        torch.cuda.synchronize()
        return {"loop_us": loop, "burst_median_us": statistics.median(per), "burst_min_us": min(per)}

    calls = {}
    for sched in ("static", "auto"):
        layer = pymoe.MoELayer(w13, s13, gs, w2, s2, gs, fc, fc, top_k=K, max_tokens=16, schedule=sched)
        calls[f"layer_{sched}_{layer.select_schedule(T)}"] = timed(lambda: layer(x, ids, tw, out))
        calls[f"layer_{sched}_explicit_stream"] = timed(lambda: layer(x, ids, tw, out, stream=s_cur))
    w = pymoe.prepare_weights(w13, s13, gs, w2, s2, gs)
    calls["fused_moe_static"] = timed(lambda: pymoe.fused_moe(x, ids, tw, w, fc, fc, out=out, schedule="static"))
    res["calls"] = calls

    try:
        import cupy as cp
        cx = cp.asarray(np.zeros((T, H), np.uint16))  # CuPy has no bf16 of its own: view bits
        try:
            import ml_dtypes
            cx = cx.view(ml_dtypes.bfloat16)
        except Exception:  # noqa: BLE001
            cx = cp.from_dlpack(x)
        cids, ctw = cp.asarray(ids.cpu().numpy()), cp.asarray(tw.cpu().numpy())
        cout = cp.from_dlpack(out)
        c = {"cupy": cp.__version__, "exchange_api": _core._exchange_api_version(cids)}
        c["cupy_4_arrays_us"] = per_call_us(lambda k: _core._bench_parse(cx, cids, ctw, cout, k, H, K), 5_000)
        c["cupy_cai_only_4_arrays_us"] = per_call_us(
            lambda k: _core._bench_parse(CAIOnly(cx), CAIOnly(cids), CAIOnly(ctw), CAIOnly(cout), k, H, K), 5_000)
        layer = pymoe.MoELayer(w13, s13, gs, w2, s2, gs, fc, fc, top_k=K, max_tokens=16, schedule="static")
        c["layer_static"] = timed(lambda: layer(cx, cids, ctw, cout))
        smv, why = smv_cost({"cupy": cids}, 5_000)
        c["cuda_core_StridedMemoryView_1_array_us"] = smv if smv is not None else why
        res["cupy"] = c
    except Exception as e:  # noqa: BLE001
        res["cupy"] = f"skipped: {type(e).__name__}: {e}"
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="write a JSON under bench/results/")
    ap.add_argument("--cpu-only", action="store_true", help="skip the GPU part")
    args = ap.parse_args()
    res = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": sys.version.split()[0],
           "platform": platform.platform(), "machine": platform.node(), "pymoe": pymoe.__version__,
           "numpy": np.__version__, "cpu": cpu_part()}
    have_gpu = pymoe.device_count() > 0 and not args.cpu_only
    if have_gpu:
        try:
            import torch  # noqa: F401
            res["gpu"] = gpu_part()
        except ImportError as e:
            res["gpu"] = f"skipped: {e}"
    else:
        res["gpu"] = "skipped: no GPU" if not args.cpu_only else "skipped: --cpu-only"
    print(json.dumps(res, indent=2, default=str))
    if args.write:
        tag = "gpu" if have_gpu else "cpu"
        name = f"host-overhead-{datetime.date.today().isoformat()}-{tag}.json"
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        path = os.path.join(HERE, "results", name)
        with open(path, "w") as f:
            json.dump(res, f, indent=2, default=str)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
