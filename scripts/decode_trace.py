"""Per-item timeline of the mma.sync grouped kernels (the decode GEMMs) from a trace build (CMake
-DMOE12X_WS_TRACE=ON, kernel/ws_trace.cuh), on the GPU machine with the package installed on that
library and torch present:

    python3 scripts/decode_trace.py qwen3-30b-a3b:1 deepseek-v3:256

Per GEMM: items, span, and per item (means, p10 / p90): the wait (start to past the PDL wait:
the predecessor's tail, CTA launch, the weight ring's first stages issued), the first token
stage, the mainloop after it, of which the token stages and their barriers of the later chunks,
and the epilogue; then the share of SM time in each (CTA slots = SMs x CTAs per SM seen) and
the mainloop's ns per k64 block by tile width. One call after a warm-up and an L2 flush (cold
weights, as the benchmark's rotated weight sets). With OUT set, also appended to
$OUT/decode-trace.txt.
"""
import ctypes
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pymoe  # noqa: E402
from pymoe.demo import MODEL_SHAPES  # noqa: E402
from prof_layer import make_layer  # noqa: E402

REC = np.dtype([("start", "u8"), ("first_full", "u8"), ("main_end", "u8", 2), ("epi_end", "u8", 2),
                ("smid", "i4"), ("nrows", "i4"), ("expert", "i4"), ("mblock", "i4")])
NREC = 1 << 16  # kWsTraceRecords

# Also written to $OUT/decode-trace.txt when OUT is set (the device tool returns only the tail of
# stdout).
_log = open(os.path.join(os.environ["OUT"], "decode-trace.txt"), "a") if os.environ.get("OUT") else None


def say(line=""):
    print(line)
    if _log:
        _log.write(line + "\n")
        _log.flush()


lib = None
flush = torch.empty(64 << 20, dtype=torch.float32, device="cuda")  # 256 MB > L2
us = lambda a: np.asarray(a, dtype=np.float64) / 1e3
f = lambda a: f"{np.mean(a):7.2f} us (p10 {np.percentile(a, 10):6.2f}, p90 {np.percentile(a, 90):6.2f})"

for arg in sys.argv[1:]:
    name, T = arg.split(":")[0], int(arg.split(":")[1])
    H, I = MODEL_SHAPES[name]["hidden"], MODEL_SHAPES[name]["inter"]
    layer, d, out, stream = make_layer(name, T)
    if lib is None:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(pymoe.__file__), "libmoe12x.so"))
        lib.moe12x_debug_decode_trace.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        assert lib.moe12x_debug_decode_trace(None, 0, 1) == 0  # allocate before the calls
    for _ in range(3):
        layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=stream)
    torch.cuda.synchronize()
    assert lib.moe12x_debug_decode_trace(None, 0, 1) == 0
    flush.fill_(1.0)  # evict the weights from L2 (a cold call, as the benchmark's rotated sets)
    layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=stream)
    torch.cuda.synchronize()
    buf = np.zeros((2, NREC), dtype=REC)
    assert lib.moe12x_debug_decode_trace(buf.ctypes.data, buf.nbytes, 0) == 0
    for g, (gname, K) in enumerate((("FC1", H), ("FC2", I))):
        r = buf[g][(buf[g]["start"] != 0) & (buf[g]["epi_end"][:, 0] != 0)]
        if len(r) == 0:
            say(f"== {name} T={T} {gname}: no records (not the mma.sync grouped kernel?)")
            continue
        s = r["start"].astype(np.int64)
        t0 = s.min()
        wait = us(r["main_end"][:, 0].astype(np.int64) - s)
        first_stage_ns = r["first_full"].astype(np.int64) - r["main_end"][:, 0].astype(np.int64)
        stage0 = us(first_stage_ns)
        main = us(r["main_end"][:, 1].astype(np.int64) - r["first_full"].astype(np.int64))
        later = us(np.maximum(r["epi_end"][:, 1].astype(np.int64) - first_stage_ns, 0))  # later chunks' stages
        epi = us(r["epi_end"][:, 0].astype(np.int64) - r["main_end"][:, 1].astype(np.int64))
        span = us(r["epi_end"][:, 0].astype(np.int64).max() - t0)
        nsm = len(np.unique(r["smid"]))
        # concurrent CTAs per SM: the most items of one SM whose [start, end) overlap a moment
        slots = 0
        for sm in np.unique(r["smid"]):
            x = r[r["smid"] == sm]
            ev = sorted([(int(a), 1) for a in x["start"]] + [(int(b), -1) for b in x["epi_end"][:, 0]], key=lambda e: (e[0], e[1]))
            c = m = 0
            for _, dlt in ev:
                c += dlt
                m = max(m, c)
            slots = max(slots, m)
        tot = span * nsm * slots
        say(f"== {name} T={T} {gname}: {len(r)} items on {nsm} SMs (<= {slots} at once per SM), span {span:.1f} us, "
              f"K = {K} ({K // 64} k64 blocks)")
        say(f"   per item: wait      {f(wait)}\n             stage 0   {f(stage0)}\n"
              f"             mainloop  {f(main)}  of which later stages {f(later)}\n             epilogue  {f(epi)}")
        say(f"   CTA-slot time: wait {wait.sum() / tot:.3f}, stage 0 {stage0.sum() / tot:.3f}, mainloop {main.sum() / tot:.3f} "
              f"(later stages {later.sum() / tot:.3f}), epilogue {epi.sum() / tot:.3f}, idle {1 - (wait + stage0 + main + epi).sum() / tot:.3f}")
        nb = np.where((r["nrows"] + 7) // 8 <= 1, 8, 16)
        say("   mainloop ns per k64 block (stages excluded) by width: " + ", ".join(
            f"{w}: {np.mean((main - later)[nb == w]) * 1e3 / (K // 64):.0f} ({np.sum(nb == w)} items)" for w in np.unique(nb)))
