#!/usr/bin/env python
"""moe12x benchmark: the layer against the card's two ceilings and against plain PyTorch.

    python bench/bench_moe.py                  # decode sweep, T = 1 .. 256, four model shapes
    python bench/bench_moe.py --prefill        # T = 512 .. 16384
    python bench/bench_moe.py --quick          # a small subset (smoke run)
    python bench/bench_moe.py --cliff          # T = 128 .. 8192 in half octaves (the switches)
    python bench/bench_moe.py --shapes deepseek-v3 --T 1,64 --no-torch

Needs the built package (pymoe), torch with CUDA, and matplotlib for the PNG. See
bench/README.md for what is measured and how to read the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import zlib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:  # the installed package; else the checkout (built in place)
    from pymoe.demo import MODEL_SHAPES
except ImportError:
    sys.path.insert(0, _ROOT)
    from pymoe.demo import MODEL_SHAPES  # noqa: E402

DECODE_T = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PREFILL_T = [512, 1024, 2048, 4096, 8192, 16384]
QUICK_T = [1, 8, 64, 256]
QUICK_PREFILL_T = [1024, 4096]
# Half-octave grid over the schedule and kernel switches (16, 32, 64 routed rows per expert fall
# between powers of two on the compass shapes): the no-cliff check needs the points in between.
CLIFF_T = [128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192]
CLIFF_RATIO = 0.9  # the prefill issue: time never drops by more than 10 % when T grows

E2M1_RMS = 2.926  # RMS of uniformly drawn e2m1 codes
NVFP4_BYTES_PER_PARAM = 0.5 + 1.0 / 16.0  # 4.5 bits: e2m1 code + one e4m3 scale per 16


def log(*a):
    print(*a, flush=True)


# ============================================================================================
# Timing helpers
# ============================================================================================
def time_events(torch, fn, iters: int, warmup: int = 2) -> list[float]:
    """Per-iteration GPU time (seconds) of fn(), CUDA events around each call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)]


def iters_for(torch, fn, budget_s: float, lo: int, hi: int) -> int:
    t = statistics.median(time_events(torch, fn, 2, warmup=1))
    return int(max(lo, min(hi, budget_s / max(t, 1e-6))))


def measure_ceilings(torch, copy_bytes: int = 2 << 30, n: int = 8192):
    """Device-to-device copy bandwidth (read + write bytes) and bf16 matmul rate."""
    src = torch.empty(copy_bytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    src.fill_(1)
    t = statistics.median(time_events(torch, lambda: dst.copy_(src), 10, warmup=3))
    bw = 2 * copy_bytes / t
    src = dst = None
    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    t = statistics.median(time_events(torch, lambda: torch.matmul(a, b), 10, warmup=3))
    rate = 2.0 * n ** 3 / t
    a = b = None
    torch.cuda.empty_cache()
    return bw, rate


# ============================================================================================
# Random problems on the GPU (fresh random data, no zeros; uniform random top-k routing)
# ============================================================================================
def random_weights(torch, E, H, I, gen):
    """Random NVFP4 weights: random code bytes, sane random e4m3 scale bytes (0.25 .. 2.0),
    per-expert global scales giving values of RMS ~ 1/sqrt(K)."""
    dev = "cuda"

    def mat(rows, k):
        q = torch.randint(0, 256, (E, rows, k // 2), dtype=torch.uint8, device=dev, generator=gen)
        sf = torch.randint(0x28, 0x41, (E, rows, k // 16), dtype=torch.uint8, device=dev,
                           generator=gen)
        gs = (torch.rand(E, device=dev, generator=gen) + 0.5) / (math.sqrt(k) * E2M1_RMS)
        return q, sf, gs.float()

    w13, s13, g13 = mat(2 * I, H)
    w2, s2, g2 = mat(H, I)
    return dict(w13=w13, w13_scale=s13, w13_global_scale=g13, w2=w2, w2_scale=s2,
                w2_global_scale=g2)


def random_inputs(torch, T, H, E, k, gen):
    x = torch.randn(T, H, device="cuda", generator=gen)
    tiny = (x >= 0).float() * 2e-3 - 1e-3  # +-1e-3 with x's sign: no zeros
    x = torch.where(x.abs() < 1e-3, tiny, x).to(torch.bfloat16)
    ids = torch.rand(T, E, device="cuda", generator=gen).argsort(dim=1)[:, :k].to(torch.int32)
    w = torch.softmax(torch.randn(T, k, device="cuda", generator=gen), dim=1).float()
    return dict(x=x.contiguous(), topk_ids=ids.contiguous(), topk_weights=w.contiguous())


def point_generator(torch, seed: int, shape: str, T: int):
    """The inputs' generator for one (shape, T) point: seeded from the point alone, so its routing
    does not depend on which T values (or shapes) ran before it in the sweep, and a subset sweep
    measures the same calls as a full one (session 11's full-sweep dips were traced to this)."""
    g = torch.Generator(device="cuda")
    g.manual_seed(zlib.crc32(f"{seed}:{shape}:{T}".encode()))
    return g


def distinct_experts(torch, ids) -> int:
    return int(torch.unique(ids).numel())


# ============================================================================================
# Plain PyTorch baseline
# ============================================================================================
def dequantize_bf16(torch, q, sf, gs):
    """NVFP4 [E, R, K/2] codes + [E, R, K/16] e4m3 scales + [E] fp32 -> bf16 [E, R, K]."""
    lut = torch.tensor([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6],
                       dtype=torch.float32, device="cuda")
    E, R, K2 = q.shape
    K = 2 * K2
    out = torch.empty((E, R, K), dtype=torch.bfloat16, device="cuda")
    for e in range(E):  # one expert at a time (keeps the fp32 temporaries small)
        codes = torch.stack([q[e] & 0xF, q[e] >> 4], dim=-1).reshape(R, K).long()
        v = lut[codes].view(R, K // 16, 16)
        s = sf[e].view(torch.float8_e4m3fn).float().unsqueeze(-1)
        out[e] = (v * s * gs[e]).view(R, K).to(torch.bfloat16)
    return out


class TorchMoE:
    """The layer as everyone writes it in PyTorch: sort the (token, slot) pairs by expert,
    gather the rows, per-expert matmuls (FC1 -> silu(gate) * up -> FC2), weighted sum."""

    def __init__(self, torch, w13_bf16, w2_bf16, inter: int):
        self.torch, self.w13, self.w2, self.inter = torch, w13_bf16, w2_bf16, inter

    def __call__(self, x, ids, w):
        torch = self.torch
        T, k = ids.shape
        flat = ids.reshape(-1).long()
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=self.w13.shape[0]).tolist()  # host sync
        tok = order // k
        xs = x.index_select(0, tok)
        ys = torch.empty((T * k, x.shape[1]), dtype=torch.bfloat16, device=x.device)
        start = 0
        for e, c in enumerate(counts):
            if c == 0:
                continue
            h = torch.matmul(xs[start:start + c], self.w13[e].t())
            up, gate = h[:, :self.inter], h[:, self.inter:]
            a = torch.nn.functional.silu(gate) * up
            ys[start:start + c] = torch.matmul(a, self.w2[e].t())
            start += c
        ys = ys.float() * w.reshape(-1)[order].unsqueeze(1)
        out = torch.zeros((T, x.shape[1]), dtype=torch.float32, device=x.device)
        out.index_add_(0, tok, ys)
        return out.to(torch.bfloat16)


# ============================================================================================
# The benchmark
# ============================================================================================
def schedule_name(pymoe, layer, T: int) -> str:
    """The schedule "auto" picks for T (if the package exposes it), else "auto"."""
    for obj, attr in ((layer, "select_schedule"), (layer, "schedule_for"),
                      (pymoe, "select_schedule")):
        f = getattr(obj, attr, None)
        if f is None:
            continue
        try:
            r = f(T) if obj is layer else f(layer, T)
            return str(getattr(r, "name", r)).lower()
        except Exception:
            continue
    return str(getattr(layer, "schedule", "auto"))


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def bench_shape(torch, pymoe, name, shape, Ts, args, ceil_bw, ceil_rate, card, records):
    E = args.experts or shape["num_experts"]
    k, H, I = shape["top_k"], shape["hidden"], shape["inter"]
    per_expert = 3 * H * I * NVFP4_BYTES_PER_PARAM
    l2 = torch.cuda.get_device_properties(0).L2_cache_size or (50 << 20)
    free = torch.cuda.mem_get_info()[0]
    # enough distinct weight sets that, rotating, the weights a call reads were evicted from L2
    # by the calls in between: (sets - 1) * bytes touched at T = 1 >= 4 * L2
    touched_t1 = min(k, E) * per_expert
    nsets = int(min(8, max(2, math.ceil(4 * l2 / touched_t1) + 1)))
    set_bytes = E * per_expert
    nsets = max(1, min(nsets, int(0.35 * free // max(set_bytes, 1))))
    maxT = max(Ts)
    gen = torch.Generator(device="cuda")
    gen.manual_seed(args.seed)
    log(f"\n== {name}: E={E} top_k={k} H={H} I={I}; {nsets} weight set(s) of "
        f"{set_bytes / 2**30:.2f} GiB NVFP4 (L2 {l2 / 2**20:.0f} MiB)")
    t0 = time.perf_counter()
    layers = []
    canon0 = None
    for i in range(nsets):
        wd = random_weights(torch, E, H, I, gen)
        fc1 = torch.tensor([4.5 / (6 * 448)], dtype=torch.float32, device="cuda")
        fc2 = torch.tensor([8.0 / (6 * 448)], dtype=torch.float32, device="cuda")
        layers.append(pymoe.MoELayer(wd["w13"], wd["w13_scale"], wd["w13_global_scale"],
                                     wd["w2"], wd["w2_scale"], wd["w2_global_scale"], fc1, fc2,
                                     top_k=k, max_tokens=maxT, act_quant=args.act_quant,
                                     schedule=args.schedule,
                                     stream=torch.cuda.current_stream().cuda_stream))
        torch.cuda.synchronize()
        if i == 0 and not args.no_torch:
            canon0 = wd
        del wd
    log(f"   prepared in {time.perf_counter() - t0:.1f} s; workspace "
        f"{layers[0].workspace_bytes / 2**20:.1f} MiB per layer")

    # plain PyTorch baseline: bf16 weights of set 0, E reduced if they do not fit
    tmoe, e_torch, torch_note = None, E, ""
    if canon0 is not None:
        bf16_bytes = E * 3 * H * I * 2
        free = torch.cuda.mem_get_info()[0]
        if bf16_bytes > 0.5 * free:
            e_torch = max(k, int(0.5 * free // (3 * H * I * 2)))
            torch_note = f"E reduced to {e_torch} (bf16 weights of all {E} do not fit)"
            log(f"   torch baseline: {torch_note}")
        w13b = dequantize_bf16(torch, canon0["w13"][:e_torch], canon0["w13_scale"][:e_torch],
                               canon0["w13_global_scale"][:e_torch])
        w2b = dequantize_bf16(torch, canon0["w2"][:e_torch], canon0["w2_scale"][:e_torch],
                              canon0["w2_global_scale"][:e_torch])
        tmoe = TorchMoE(torch, w13b, w2b, I)
    canon0 = None
    torch.cuda.empty_cache()

    hdr = (f"   {'T':>6} {'impl':>8} {'time_us':>10} {'GB/s':>8} {'TFLOP/s':>8} {'eff':>6} "
           f"{'experts':>7} {'schedule':>9} {'ws_MiB(T)':>10}")
    log(hdr)
    for T in Ts:
        ninp = 2 * nsets if nsets > 1 else 4
        pgen = point_generator(torch, args.seed, name, T)
        inputs = [random_inputs(torch, T, H, E, k, pgen) for _ in range(ninp)]
        outs = [torch.empty((T, H), dtype=torch.bfloat16, device="cuda") for _ in range(ninp)]
        calls = [(layers[i % nsets], inputs[i], outs[i]) for i in range(ninp)]
        n_exp = statistics.mean(distinct_experts(torch, d["topk_ids"]) for d in inputs)
        min_bytes = n_exp * per_expert + 2 * T * H * 2 + T * k * 8
        flops = 2.0 * T * k * (H * 2 * I + I * H)
        roof = max(min_bytes / ceil_bw, flops / ceil_rate)

        def run_all(stream_handle):
            for lay, d, o in calls:
                lay(d["x"], d["topk_ids"], d["topk_weights"], o, stream=stream_handle)

        timing, g = "graph", None
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run_all(side.cuda_stream)  # warm-up outside the capture
        torch.cuda.synchronize()
        try:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                run_all(torch.cuda.current_stream().cuda_stream)
            fn = g.replay
        except Exception as e:  # report, and fall back to eager launches
            log(f"   CUDA graph capture failed ({type(e).__name__}: {e}); timing eagerly")
            timing = "eager"
            torch.cuda.synchronize()

            def fn():
                run_all(torch.cuda.current_stream().cuda_stream)
        reps = iters_for(torch, fn, args.budget, 5, 200)
        t = statistics.median(time_events(torch, fn, reps)) / len(calls)
        sched = schedule_name(pymoe, layers[0], T)
        rec = dict(impl="moe12x", card=card, shape=name, T=T, time_us=t * 1e6,
                   efficiency=roof / t, bandwidth_GBs=min_bytes / t / 1e9,
                   tflops=flops / t / 1e12, schedule=sched, timing=timing,
                   E=E, top_k=k, H=H, I=I, act_quant=args.act_quant, experts_touched=n_exp,
                   min_bytes=min_bytes, flops=flops, weight_sets=nsets, calls_per_graph=len(calls),
                   ceiling_bw_GBs=ceil_bw / 1e9, ceiling_tflops=ceil_rate / 1e12,
                   # the smallest workspace for T (what MoELayer(max_tokens=T) allocates; this run's
                   # layers hold max_tokens = max(T)): bench/workspace_table.py has its ratios
                   workspace_bytes_for_T=pymoe.workspace_size(E, E, k, H, I, T, act_quant=args.act_quant,
                                                              schedule=args.schedule),
                   workspace_bytes_layer=layers[0].workspace_bytes)
        records.append(rec)
        log(f"   {T:>6} {'moe12x':>8} {t * 1e6:>10.1f} {min_bytes / t / 1e9:>8.0f} "
            f"{flops / t / 1e12:>8.1f} {roof / t:>6.3f} {n_exp:>7.1f} {sched:>9} "
            f"{rec['workspace_bytes_for_T'] / 2**20:>10.1f}")
        del fn
        g = None  # release the graph before the next T

        if tmoe is not None:
            tinputs = [random_inputs(torch, T, H, e_torch, k, pgen) for _ in range(4)]
            counter = [0]

            def tfn():  # eager (its loop is data-dependent), rotating among input sets
                counter[0] += 1
                d = tinputs[counter[0] % len(tinputs)]
                tmoe(d["x"], d["topk_ids"], d["topk_weights"])
            reps = iters_for(torch, tfn, args.budget, 3, 50)
            tt = statistics.median(time_events(torch, tfn, reps))
            n_exp_t = statistics.mean(distinct_experts(torch, d["topk_ids"]) for d in tinputs)
            mb_t = n_exp_t * per_expert + 2 * T * H * 2 + T * k * 8
            roof_t = max(mb_t / ceil_bw, flops / ceil_rate)
            rec_t = dict(impl="torch", card=card, shape=name, T=T, time_us=tt * 1e6,
                         efficiency=roof_t / tt, bandwidth_GBs=mb_t / tt / 1e9,
                         tflops=flops / tt / 1e12, schedule="eager", timing="eager",
                         E=e_torch, top_k=k, H=H, I=I, act_quant="bf16-dequantized",
                         experts_touched=n_exp_t, min_bytes=mb_t, flops=flops,
                         ceiling_bw_GBs=ceil_bw / 1e9, ceiling_tflops=ceil_rate / 1e12)
            if torch_note:
                rec_t["note"] = torch_note
            records.append(rec_t)
            log(f"   {T:>6} {'torch':>8} {tt * 1e6:>10.1f} {mb_t / tt / 1e9:>8.0f} "
                f"{flops / tt / 1e12:>8.1f} {roof_t / tt:>6.3f} {n_exp_t:>7.1f} {'eager':>9}")
        inputs = outs = calls = tinputs = None

    # per-call host overhead of an eager call at T = 1 (it matters at decode)
    if 1 in Ts or args.quick:
        d = random_inputs(torch, 1, H, E, k, point_generator(torch, args.seed, name, -1))
        o = torch.empty((1, H), dtype=torch.bfloat16, device="cuda")
        s = torch.cuda.current_stream().cuda_stream
        for _ in range(10):
            layers[0](d["x"], d["topk_ids"], d["topk_weights"], o, stream=s)
        torch.cuda.synchronize()
        n = 200
        t0 = time.perf_counter()
        for _ in range(n):
            layers[0](d["x"], d["topk_ids"], d["topk_weights"], o, stream=s)
        t_host = (time.perf_counter() - t0) / n
        torch.cuda.synchronize()
        t_all = (time.perf_counter() - t0) / n
        log(f"   eager T=1: {t_host * 1e6:.1f} us host time per call (launch + checks), "
            f"{t_all * 1e6:.1f} us per call back to back incl. GPU")
        records.append(dict(impl="moe12x-eager", card=card, shape=name, T=1,
                            time_us=t_all * 1e6, host_us=t_host * 1e6, efficiency=None,
                            bandwidth_GBs=None, tflops=None,
                            schedule=schedule_name(pymoe, layers[0], 1), timing="eager-wall",
                            E=E, top_k=k, H=H, I=I))
    layers = tmoe = None
    torch.cuda.empty_cache()


def plot(records, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:
        log(f"matplotlib unavailable ({e}): no PNG")
        return
    shapes = list(dict.fromkeys(r["shape"] for r in records))
    n = len(shapes)
    cols = min(2, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax, shape in zip(axes.flat, shapes):
        for impl, style in (("moe12x", "o-"), ("torch", "s--")):
            rs = sorted((r for r in records if r["shape"] == shape and r["impl"] == impl),
                        key=lambda r: r["T"])
            if rs:
                ax.plot([r["T"] for r in rs], [r["efficiency"] for r in rs], style, label=impl)
        ax.set_xscale("log", base=2)
        top = max([1.0] + [r["efficiency"] for r in records if r["shape"] == shape])
        ax.set_ylim(0, 1.05 * top)
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_title(shape)
        ax.set_xlabel("tokens T")
        ax.set_ylabel("roofline efficiency")
        ax.grid(True, alpha=0.3)
        ax.legend()
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    card = records[0]["card"] if records else ""
    fig.suptitle(f"moe12x vs PyTorch, {card}: max(min_bytes/BW, FLOPs/matmul) / time")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=",".join(MODEL_SHAPES),
                    help="comma list of " + ", ".join(MODEL_SHAPES))
    ap.add_argument("--T", default=None, help="comma list of token counts (overrides the sweep)")
    ap.add_argument("--prefill", action="store_true", help="T in 512..16384 instead of 1..256")
    ap.add_argument("--quick", action="store_true", help="a small subset of T")
    ap.add_argument("--cliff", action="store_true", help="T in 128..8192 by half octaves (no-cliff check)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    ap.add_argument("--act-quant", default="nvfp4", choices=["nvfp4", "none"])
    ap.add_argument("--schedule", default="auto", choices=["auto", "static", "dynamic"],
                    help="force a schedule (A/B runs); the record of performance uses auto")
    ap.add_argument("--experts", type=int, default=None, help="override E (all shapes)")
    ap.add_argument("--budget", type=float, default=0.25,
                    help="seconds of timed replays per point (median of 5..200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="result name (default: card and sweep)")
    ap.add_argument("--out-json", default=None, help="default bench/results/<name>.json")
    ap.add_argument("--png", default=None, help="default bench/results/<name>.png")
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        log("bench_moe.py needs torch (with CUDA)")
        return 2
    if not torch.cuda.is_available():
        log("no CUDA GPU visible to torch: nothing to benchmark")
        return 2
    import pymoe
    if pymoe.device_count() == 0:
        log("pymoe.device_count() == 0: nothing to benchmark")
        return 2

    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for s in shapes:
        if s not in MODEL_SHAPES:
            ap.error(f"unknown shape {s!r}")
    if args.T:
        Ts = [int(t) for t in args.T.split(",")]
    elif args.cliff:
        Ts = CLIFF_T
    elif args.prefill:
        Ts = QUICK_PREFILL_T if args.quick else PREFILL_T
    else:
        Ts = QUICK_T if args.quick else DECODE_T
    card = torch.cuda.get_device_name()
    sweep = "custom" if args.T else ("cliff" if args.cliff else "prefill" if args.prefill else "decode")
    name = args.name or f"{slug(card)}-{sweep}{'-quick' if args.quick else ''}"
    out_json = args.out_json or os.path.join(_ROOT, "bench", "results", f"{name}.json")
    out_png = args.png or os.path.join(_ROOT, "bench", "results", f"{name}.png")

    t_start = time.perf_counter()
    log(f"card: {card}; pymoe {pymoe.__version__}; torch {torch.__version__}; "
        f"python {platform.python_version()}")
    bw, rate = measure_ceilings(torch)
    log(f"ceilings: device copy {bw / 1e9:.0f} GB/s (read + write, 2 GiB), "
        f"bf16 matmul {rate / 1e12:.0f} TFLOP/s (8192^3)")
    log(f"ridge point: {rate / bw:.0f} FLOP/byte")

    records: list[dict] = []
    for s in shapes:
        bench_shape(torch, pymoe, s, MODEL_SHAPES[s], Ts, args, bw, rate, card, records)

    os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
    with open(out_json, "w") as f:
        json.dump(records, f, indent=1)
    log(f"\nwrote {out_json} ({len(records)} records)")
    plot([r for r in records if r["impl"] in ("moe12x", "torch")], out_png)

    summary(records, shapes, Ts)
    log(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


def summary(records, shapes, Ts):
    """Efficiency table, T x shapes: moe12x / torch."""
    log("\nroofline efficiency (moe12x / torch):")
    log("   " + f"{'T':>6} " + " ".join(f"{s[:18]:>20}" for s in shapes))
    for T in Ts:
        cells = []
        for s in shapes:
            m = next((r for r in records if r["shape"] == s and r["T"] == T
                      and r["impl"] == "moe12x"), None)
            t = next((r for r in records if r["shape"] == s and r["T"] == T
                      and r["impl"] == "torch"), None)
            cells.append(f"{m['efficiency']:.3f}" + (f" / {t['efficiency']:.3f}" if t else "")
                         if m else "-")
        log("   " + f"{T:>6} " + " ".join(f"{c:>20}" for c in cells))
    worst = smallest_time_ratios(records, shapes)
    if worst:
        log(f"\nsmallest time(T2) / time(T1) between neighbouring T (< {CLIFF_RATIO} is a cliff):")
        for s, (r, t1, t2) in worst.items():
            log(f"   {s:<18} {r:.3f} ({t1} -> {t2}){'  CLIFF' if r < CLIFF_RATIO else ''}")


def smallest_time_ratios(records, shapes):
    """Per shape, the smallest moe12x time ratio between neighbouring T as (ratio, T1, T2)."""
    out = {}
    for s in shapes:
        pts = sorted((r["T"], r["time_us"]) for r in records if r["shape"] == s and r["impl"] == "moe12x")
        ratios = [(b[1] / a[1], a[0], b[0]) for a, b in zip(pts, pts[1:])]
        if ratios:
            out[s] = min(ratios)
    return out


if __name__ == "__main__":
    sys.exit(main())
