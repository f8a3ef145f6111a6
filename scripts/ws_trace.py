"""Timeline of the SM90 WS kernel from a trace build (CMake -DMOE12X_WS_TRACE=ON, kernel/ws_trace.cuh),
on the GPU machine with the package installed on that library and torch present:

    python3 scripts/ws_trace.py deepseek-v3 4096

Per GEMM: where the SMs' time goes (CTA prologue to the first token buffer, mainloop, epilogue, the
gap between one CTA's end and the next CTA's start on the same SM, the tail after an SM's last
item), per-item means, and the mainloop's ns per k64 block by tile width.
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

name, T = sys.argv[1], int(sys.argv[2])
H, I = MODEL_SHAPES[name]["hidden"], MODEL_SHAPES[name]["inter"]
layer, d, out, stream = make_layer(name, T)
lib = ctypes.CDLL(os.path.join(os.path.dirname(pymoe.__file__), "libmoe12x.so"))
lib.moe12x_debug_ws_trace.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=stream)
torch.cuda.synchronize()
assert lib.moe12x_debug_ws_trace(None, 0, 1) == 0
layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=stream)
torch.cuda.synchronize()
buf = np.zeros((2, NREC), dtype=REC)
assert lib.moe12x_debug_ws_trace(buf.ctypes.data, buf.nbytes, 0) == 0

nsm = torch.cuda.get_device_properties(0).multi_processor_count
us = lambda a: np.asarray(a, dtype=np.float64) / 1e3
for g, (gname, K) in enumerate((("FC1", H), ("FC2", I))):
    r = buf[g][buf[g]["start"] != 0]
    if len(r) == 0:
        print(f"== {name} T={T} {gname}: no records (not the WS kernel?)")
        continue
    # a CTA whose tile index is past the tile count records its start only
    work = r[r["epi_end"][:, 0] != 0]
    t0 = int(r["start"].min())
    end = np.maximum(work["epi_end"][:, 0], work["epi_end"][:, 1]).astype(np.int64)
    span = us(end.max() - t0)
    pro = us(work["first_full"].astype(np.int64) - work["start"].astype(np.int64))
    main = us(work["main_end"].max(axis=1).astype(np.int64) - work["first_full"].astype(np.int64))
    epi = us(end - work["main_end"].max(axis=1).astype(np.int64))
    skew = us(np.abs(work["main_end"][:, 0].astype(np.int64) - work["main_end"][:, 1].astype(np.int64)))
    # per SM: gaps between consecutive CTAs (including empty ones), the tail after the last
    gaps, tails, heads = [], [], []
    for sm in np.unique(r["smid"]):
        x = r[r["smid"] == sm]
        x = x[np.argsort(x["start"])]
        e = np.maximum(x["epi_end"][:, 0], x["epi_end"][:, 1]).astype(np.int64)
        e = np.where(e == 0, x["start"].astype(np.int64), e)
        gaps += list(x["start"][1:].astype(np.int64) - e[:-1])
        tails.append(end.max() - e.max())
        heads.append(int(x["start"].min()) - t0)
    tot = span * nsm
    print(f"== {name} T={T} {gname}: {len(work)} items ({len(r) - len(work)} empty CTAs) on {len(np.unique(r['smid']))} SMs, "
          f"span {span:.1f} us, {len(work) / nsm:.1f} items per SM")
    print(f"   SM time: prologue {pro.sum() / tot:.3f}, mainloop {main.sum() / tot:.3f}, epilogue {epi.sum() / tot:.3f}, "
          f"gaps {us(gaps).sum() / tot:.3f}, head {us(heads).sum() / tot:.3f}, tail {us(tails).sum() / tot:.3f}")
    f = lambda a: f"{np.mean(a):7.2f} us (p10 {np.percentile(a, 10):.2f}, p90 {np.percentile(a, 90):.2f})"
    print(f"   per item: prologue {f(pro)}\n             mainloop {f(main)}\n             epilogue {f(epi)}")
    print(f"             gap      {f(us(gaps)) if gaps else '-'}\n             WG skew  {f(skew)}")
    nb = (work["nrows"] + 7) // 8
    width = np.where(nb <= 2, nb, np.where(nb <= 4, 4, (nb + 1) & ~1)) * 8
    print("   mainloop ns per k64 block by tile width (items): " + ", ".join(
        f"{w}: {np.mean(main[width == w]) * 1e3 / (K // 64):.0f} ({np.sum(width == w)})" for w in np.unique(width)))
    print("   epilogue us by tile width: " + ", ".join(f"{w}: {np.mean(epi[width == w]):.2f}" for w in np.unique(width)))
