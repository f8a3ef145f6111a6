"""Summarizes `ncu --page source --csv --print-source sass` exports (scripts/device_prof_sass.sh):
per kernel, the instructions with the most warp-stall samples and the share of samples in
contiguous regions between branch targets.
"""
import csv
import sys


def num(s):
    try:
        return float(str(s).replace(",", ""))
    except ValueError:
        return 0.0


for path in sys.argv[1:]:
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"#"') or l.startswith('"Address"') or "Source" in l[:60]), 0)
    rows = list(csv.DictReader(lines[start:]))
    if not rows:
        print(f"== {path}: no rows; head:\n" + "\n".join(lines[:5]))
        continue
    cols = list(rows[0].keys())
    scol = next((c for c in cols if "Sampling (All" in c), None)
    ncol = next((c for c in cols if "Sampling (Not" in c), None)
    src = next((c for c in cols if c.strip() in ("Source", "# Source")), cols[1])
    addr = next((c for c in cols if "Address" in c), cols[0])
    print(f"== {path}: {len(rows)} instructions; columns: {cols[:12]}")
    if scol is None:
        continue
    tot = sum(num(r[scol]) for r in rows) or 1.0
    print(f"total samples {tot:.0f}")
    top = sorted(range(len(rows)), key=lambda i: -num(rows[i][scol]))[:70]
    for i in sorted(top):
        r = rows[i]
        print(f"{i:6d} {r[addr]:>8} {100 * num(r[scol]) / tot:5.2f}% (not issued {100 * num(r[ncol]) / tot if ncol else 0:5.2f}%)  {r[src].strip()[:90]}")
    # regions of 64 instructions
    print("-- sample share per 256-instruction window (> 1%):")
    for w in range(0, len(rows), 256):
        s = sum(num(r[scol]) for r in rows[w:w + 256])
        if s / tot > 0.01:
            ops = {}
            for r in rows[w:w + 256]:
                op = r[src].strip().split(" ")[0].lstrip("@!P0123456789 ")
                ops[op] = ops.get(op, 0) + num(r[scol])
            hot = ", ".join(f"{k} {100 * v / tot:.1f}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:6])
            print(f"  [{w:6d}, {w + 256:6d}) {100 * s / tot:5.1f}%  {hot}")
