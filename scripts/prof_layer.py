"""Runs one model shape at one T a few times, for a profiler to capture the kernels:

    ncu --kernel-name regex:moe_gemm --launch-skip 2 --launch-count 2 \
        python3 scripts/prof_layer.py deepseek-v3 4096

Random weights and routing as in bench/bench_moe.py; needs the installed package and torch.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import bench_moe as B  # noqa: E402
import pymoe  # noqa: E402
from pymoe.demo import MODEL_SHAPES  # noqa: E402


def make_layer(name, T):
    """(layer, inputs, out, stream) for one model shape at T tokens, seeded as bench_moe.py."""
    s = MODEL_SHAPES[name]
    E, k, H, I = s["num_experts"], s["top_k"], s["hidden"], s["inter"]
    gen = torch.Generator(device="cuda")
    gen.manual_seed(0)
    wd = B.random_weights(torch, E, H, I, gen)
    fc1 = torch.tensor([4.5 / (6 * 448)], dtype=torch.float32, device="cuda")
    fc2 = torch.tensor([8.0 / (6 * 448)], dtype=torch.float32, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    layer = pymoe.MoELayer(wd["w13"], wd["w13_scale"], wd["w13_global_scale"], wd["w2"], wd["w2_scale"],
                           wd["w2_global_scale"], fc1, fc2, top_k=k, max_tokens=T, stream=stream)
    d = B.random_inputs(torch, T, H, E, k, gen)
    out = torch.empty((T, H), dtype=torch.bfloat16, device="cuda")
    return layer, d, out, stream


if __name__ == "__main__":
    name, T = sys.argv[1], int(sys.argv[2])
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    layer, d, out, stream = make_layer(name, T)
    for _ in range(reps):
        layer(d["x"], d["topk_ids"], d["topk_weights"], out, stream=stream)
    torch.cuda.synchronize()
    print(f"prof_layer: {name} T={T} x{reps} ok")
