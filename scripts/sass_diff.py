#!/usr/bin/env python3
"""Compare two builds' SASS kernel by kernel, on a machine without a GPU.

    python scripts/sass_diff.py OLD.so NEW.so [--filter grouped]

Per kernel: instruction count, local-memory ops (LDL/STL: spills or stack arrays), HMMA + HGMMA
count and the innermost MMA loops' sizes (the hot loops), old -> new. Kernels are matched by name after
dropping trailing `false` template arguments (a new defaulted bool parameter renames a kernel).
Needs cuobjdump: CUDA's, or `pip install --target DIR nvidia-cuda-cuobjdump` and DIR/nvidia/cu13/bin
on PATH (the 13.2 wheel reads nvcc 13.0's cubins).
"""
import argparse
import collections
import re
import shutil
import subprocess
import sys


def kernels(lib):
    out = subprocess.run(["cuobjdump", "-sass", lib], check=True, capture_output=True, text=True).stdout
    funcs, cur = {}, None
    for line in out.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            cur = m.group(1)
            funcs[cur] = []
            continue
        m = cur and re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m:
            funcs[cur].append((int(m.group(1), 16), re.sub(r"^@!?U?P\w+\s+", "", m.group(2).strip())))
    return funcs


def norm(name):
    while True:  # drop a trailing defaulted `false` (Lb0E) before the closing template brackets
        n = re.sub(r"ELb0E(E+)(?=N|E|v)", r"E\1", name, count=1)
        if n == name:
            return name
        name = n


def hot_loops(body):
    index = {a: i for i, (a, _) in enumerate(body)}
    loops = []
    for i, (a, t) in enumerate(body):
        if t.startswith("BRA"):
            m = re.search(r"0x([0-9a-f]+)", t)
            if m and int(m.group(1), 16) < a and int(m.group(1), 16) in index:
                loops.append((index[int(m.group(1), 16)], i))
    inner = [(s, e) for s, e in loops if not any(s < s2 and e2 <= e for s2, e2 in loops if (s2, e2) != (s, e))]
    return sorted(e - s + 1 for s, e in inner if any(t.startswith(("HMMA", "HGMMA")) for _, t in body[s:e + 1]))


def summary(body):
    ops = collections.Counter(t.split()[0].split(".")[0] for _, t in body)
    return dict(n=len(body), local=ops["LDL"] + ops["STL"], mma=ops["HMMA"] + ops["HGMMA"], loops=hot_loops(body)[-4:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--filter", default="", help="substring of the kernels' mangled names")
    args = ap.parse_args()
    if not shutil.which("cuobjdump"):
        sys.exit("sass_diff: cuobjdump not on PATH (see the docstring)")
    old = {norm(k): v for k, v in kernels(args.old).items() if args.filter in k}
    new = {norm(k): v for k, v in kernels(args.new).items() if args.filter in k}
    changed = 0
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        sa, sb = (summary(a) if a else None), (summary(b) if b else None)
        flag = "" if sa == sb else " *"
        changed += bool(flag)
        print(f"{name[:100]}{flag}\n    old {sa}\n    new {sb}")
    print(f"{changed} of {len(set(old) | set(new))} kernels differ")


if __name__ == "__main__":
    main()
