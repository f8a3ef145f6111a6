#!/usr/bin/env python3
"""Workspace bytes for T tokens against the prefill issue's bound (no GPU needed).

  python bench/workspace_table.py                        # the table, this process's mode
  MOE12X_FC2_CHUNKS=1 python bench/workspace_table.py    # FC2 outputs sized for column chunks
  python bench/workspace_table.py --write                # ... and bench/results/<date>-workspace[-chunks].json

For each compass shape (E, top_k, H, I of pymoe.demo.MODEL_SHAPES) and T, pymoe.workspace_size
(what MoELayer(max_tokens=T) allocates) and its ratio to "packed activations + intermediate" in
the form the kernels store them: bf16 (2 P H + 2 P I, P = T top_k routed pairs) where the call
may run the SM90 wgmma kernels (NVFP4 activations, a mean of >= 16 routed rows per expert:
choose_sm90_wgmma in cpp/instantiations/dispatch.hpp; they stage the exact NVFP4 values decoded to
bf16), else NVFP4 (P (H/2 + H/16) + P (I/2 + I/16)); and, for reference, the ratio to the NVFP4
form at every T. act_quant "nvfp4", schedule auto (dynamic).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TS = (1, 8, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def _import_pymoe():
    # prefer the installed package (the checkout's pymoe/ has no compiled extension)
    root = os.path.dirname(HERE)
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != root]
    import pymoe
    from pymoe.demo import MODEL_SHAPES
    return pymoe, MODEL_SHAPES


def rows(pymoe, shapes):
    out = []
    for name, s in shapes.items():
        E, k, H, I = s["num_experts"], s["top_k"], s["hidden"], s["inter"]
        for T in TS:
            P = T * k
            ws = pymoe.workspace_size(E, E, k, H, I, T, act_quant="nvfp4")
            bf16_form = -(-P // min(P, E)) >= 16  # mean routed rows per active expert
            fp4 = P * (H // 2 + H // 16) + P * (I // 2 + I // 16)
            used = 2 * P * H + 2 * P * I if bf16_form else fp4
            out.append(dict(shape=name, T=T, pairs=P, workspace_bytes=ws, packed_form="bf16" if bf16_form else "nvfp4",
                            packed_plus_intermediate=used, ratio=ws / used, ratio_nvfp4_form=ws / fp4))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write JSON to bench/results/")
    args = ap.parse_args()
    pymoe, shapes = _import_pymoe()
    mode = "chunks" if os.environ.get("MOE12X_FC2_CHUNKS") == "1" else "default"
    table = rows(pymoe, shapes)
    print(f"workspace for T tokens (pymoe {pymoe.__version__}, MOE12X_FC2_CHUNKS mode: {mode})")
    print(f"{'shape':<16} {'T':>6} {'MiB':>9} {'form':>5} {'ratio':>6} {'vs nvfp4':>8}")
    for r in table:
        print(f"{r['shape']:<16} {r['T']:>6} {r['workspace_bytes'] / 2**20:>9.1f} {r['packed_form']:>5} "
              f"{r['ratio']:>6.3f} {r['ratio_nvfp4_form']:>8.2f}")
    if args.write:
        day = datetime.date.today().isoformat()
        path = os.path.join(HERE, "results", f"{day}-workspace{'-chunks' if mode == 'chunks' else ''}.json")
        with open(path, "w") as f:
            json.dump(dict(mode=mode, pymoe=pymoe.__version__, rows=table), f, indent=1)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
