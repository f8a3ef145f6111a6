"""Per-kernel timeline of the layer inside a CUDA graph replay (CUPTI through torch.profiler):
where a decode call's microseconds go, launch gaps and PDL overlap included.

    python3 scripts/kernel_timeline.py qwen3-30b-a3b:1 deepseek-v3:8 [--sets 4] [--schedule auto]

The graph holds several calls back to back over rotated weight sets (as bench/bench_moe.py), so the
weights are not in L2. For each kernel of a call: median start and end (µs, from the start of the
call's first kernel) and median duration; then the call's span and the span between calls. Needs
the installed package and torch.
"""
import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import bench_moe as B  # noqa: E402
import pymoe  # noqa: E402
from pymoe.demo import MODEL_SHAPES  # noqa: E402


def short(name):
    for key in ("route_kernel", "route_count", "route_scatter", "pack_fp4", "combine", "static", "sm90_ws", "grouped"):
        if key in name:
            if key in ("sm90_ws", "grouped"):
                return f"{'fc1' if 'kFc1' in name or 'Gemm)0' in name else 'fc2'}:{key}"
            return key
    return name[:40]


def timeline(name, T, nsets, schedule, gen, warm=3):
    s = MODEL_SHAPES[name]
    E, k, H, I = s["num_experts"], s["top_k"], s["hidden"], s["inter"]
    stream = torch.cuda.current_stream().cuda_stream
    layers = []
    for _ in range(nsets):
        wd = B.random_weights(torch, E, H, I, gen)
        fc1 = torch.tensor([4.5 / (6 * 448)], dtype=torch.float32, device="cuda")
        fc2 = torch.tensor([8.0 / (6 * 448)], dtype=torch.float32, device="cuda")
        layers.append(pymoe.MoELayer(wd["w13"], wd["w13_scale"], wd["w13_global_scale"], wd["w2"],
                                     wd["w2_scale"], wd["w2_global_scale"], fc1, fc2, top_k=k,
                                     max_tokens=T, schedule=schedule, stream=stream))
        del wd
    ncalls = 2 * nsets
    ins = [B.random_inputs(torch, T, H, E, k, gen) for _ in range(ncalls)]
    outs = [torch.empty((T, H), dtype=torch.bfloat16, device="cuda") for _ in range(ncalls)]

    def run_all(h):
        for i in range(ncalls):
            layers[i % nsets](ins[i]["x"], ins[i]["topk_ids"], ins[i]["topk_weights"], outs[i], stream=h)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run_all(side.cuda_stream)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        run_all(torch.cuda.current_stream().cuda_stream)
    for _ in range(warm):  # sustained load first (clocks settle under it), then the profiled replays
        g.replay()
    torch.cuda.synchronize()
    ev = B.time_events(torch, g.replay, 20)  # the benchmark's measure of the same graph, for reference
    ev_call = statistics.median(ev) / ncalls * 1e6
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            g.replay()
        torch.cuda.synchronize()
    evs = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                  and e.name not in ("Memcpy", "Memset")), key=lambda e: e.time_range.start)
    kern = [(short(e.name), e.time_range.start, e.time_range.end) for e in evs]
    first = kern[0][0]
    calls, cur = [], []
    for kk in kern:  # a call starts at each kernel named like the first one
        if kk[0] == first and cur:
            calls.append(cur)
            cur = []
        cur.append(kk)
    calls.append(cur)
    starts = [c[0][1] for c in calls]
    gaps = sorted(b - a for a, b in zip(starts, starts[1:]))
    calls = calls[1:-1] if len(calls) > 3 else calls  # drop the replay edges
    names = [c[0] for c in calls[0]]
    calls = [c for c in calls if [x[0] for x in c] == names]
    print(f"\n== {name} T={T} schedule={schedule}: {len(calls)} calls, kernels {names}")
    print(f"   {'kernel':<18} {'start':>8} {'end':>8} {'dur':>8}   (µs from the call's first kernel start, median)")
    for i, n in enumerate(names):
        st = statistics.median(c[i][1] - c[0][1] for c in calls)
        en = statistics.median(c[i][2] - c[0][1] for c in calls)
        du = statistics.median(c[i][2] - c[i][1] for c in calls)
        print(f"   {n:<18} {st:>8.1f} {en:>8.1f} {du:>8.1f}")
    span = statistics.median(max(x[2] for x in c) - c[0][1] for c in calls)
    period = statistics.median(b[0][1] - a[0][1] for a, b in zip(calls, calls[1:]))
    print(f"   call span {span:.1f} µs, call-to-call {period:.1f} µs; CUDA events around the replay "
          f"(bench_moe.py's measure): {ev_call:.1f} µs per call")
    print(f"   every call-to-call period over the profiled replays (sorted, µs): "
          f"{' '.join(f'{x:.0f}' for x in gaps)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("points", nargs="+", help="shape:T")
    ap.add_argument("--sets", type=int, default=4)
    ap.add_argument("--schedule", default="auto")
    ap.add_argument("--warm", type=int, default=3, help="graph replays before the profiled ones")
    ap.add_argument("--ceilings-first", action="store_true",
                    help="measure the copy and matmul ceilings first, as bench_moe.py does")
    a = ap.parse_args()
    if a.ceilings_first:
        bw, rate = B.measure_ceilings(torch)
        print(f"ceilings: {bw / 1e9:.0f} GB/s, {rate / 1e12:.0f} TFLOP/s")
    gen = torch.Generator(device="cuda")
    gen.manual_seed(0)
    for pt in a.points:
        name, T = pt.split(":")
        timeline(name, int(T), a.sets, a.schedule, gen, a.warm)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
