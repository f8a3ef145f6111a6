"""Kernel smoke check through ctypes (no Cython layer needed): the GPU quantizer bit for bit
and the fused layer against pymoe.reference, on fresh random data with poisoned outputs.

    python3 scripts/dev_smoke.py [path/to/libmoe12x.so]

Needs torch with CUDA. Prints one line per case and exits non-zero on any failure.
"""
import ctypes as C
import importlib.util
import pathlib
import sys
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import dev_ref  # noqa: E402  (the lead's independent model; always used)

ref = None  # pymoe.reference, cross-checked against dev_ref when present
if (ROOT / "pymoe" / "reference.py").exists():
    spec = importlib.util.spec_from_file_location("reference", ROOT / "pymoe" / "reference.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)

_paths = [a for a in sys.argv[1:] if not a.startswith("--")]
lib = C.CDLL(_paths[0] if _paths else str(ROOT / ".devbuild" / "libmoe12x.so"))
lib.moe12x_get_last_error.restype = C.c_char_p
lib.moe12x_status_string.restype = C.c_char_p


class Config(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("num_experts", C.c_int32), ("num_local_experts", C.c_int32),
                ("local_expert_offset", C.c_int32), ("hidden_size", C.c_int32),
                ("intermediate_size", C.c_int32), ("top_k", C.c_int32), ("max_tokens", C.c_int64),
                ("act_quant", C.c_int32), ("schedule", C.c_int32), ("device", C.c_int32)]


class Weights(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("w13", C.c_void_p), ("w13_scale", C.c_void_p),
                ("w13_global_scale", C.c_void_p), ("w2", C.c_void_p), ("w2_scale", C.c_void_p),
                ("w2_global_scale", C.c_void_p), ("scale_layout", C.c_int32), ("gate_up_order", C.c_int32)]


class Inputs(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("num_tokens", C.c_int64), ("x", C.c_void_p),
                ("topk_ids", C.c_void_p), ("ids_dtype", C.c_int32), ("topk_weights", C.c_void_p),
                ("weights_dtype", C.c_int32), ("fc1_input_scale", C.c_void_p),
                ("fc1_input_scale_count", C.c_int32), ("fc2_input_scale", C.c_void_p),
                ("fc2_input_scale_count", C.c_int32), ("out", C.c_void_p)]


def check(status, what):
    if status != 0:
        raise RuntimeError(f"{what}: {lib.moe12x_status_string(status).decode()}: "
                           f"{lib.moe12x_get_last_error().decode()}")


def dev(a):
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


def bf16_bits(x32):
    return (dev_ref.bf16(x32).view(np.uint32) >> 16).astype(np.uint16).view(np.int16)


def from_bf16_bits(b):
    return (b.astype(np.uint16).astype(np.uint32) << 16).view(np.float32)


rng = np.random.default_rng(int(time.time()))
failures = 0


def quant_case(rows, cols, gs, swizzled, ld=None):
    global failures
    ld = ld or cols
    x = (rng.standard_normal((rows, ld)) * np.exp(rng.uniform(-12, 4, (rows, 1)))).astype(np.float32)
    x = dev_ref.bf16(x)
    x[0, :16] = 0.0
    if rows > 1:
        x[1, :16] = -0.0
    xd = dev(bf16_bits(x))
    layout = "swizzled" if swizzled else "row_major"
    nsf = ((rows + 127) // 128 * 128) * ((cols // 16 + 3) // 4 * 4) if swizzled else rows * cols // 16
    q = torch.full((rows, cols // 2), 0xAB, dtype=torch.uint8, device="cuda")
    sf = torch.full((nsf,), 0xCD, dtype=torch.uint8, device="cuda")
    g = dev(np.array([gs], np.float32))
    check(lib.moe12x_quantize_nvfp4(C.c_void_p(xd.data_ptr()), C.c_int64(rows), C.c_int64(cols), C.c_int64(ld),
                                    C.c_void_p(g.data_ptr()), C.c_void_p(q.data_ptr()), C.c_void_p(sf.data_ptr()),
                                    C.c_int32(1 if swizzled else 0), None), "quantize")
    torch.cuda.synchronize()
    dq, dsf = dev_ref.quantize(x[:, :cols], gs)
    rq, rsf = dev_ref.pack(dq), (dev_ref.swizzle(dsf, rows, cols) if swizzled else dsf)
    if ref is not None:
        pq, psf = ref.quantize_nvfp4(x[:, :cols], np.float32(gs), scale_layout=layout)
        agree = np.array_equal(pq, rq) and np.array_equal(np.asarray(psf).reshape(-1), rsf.reshape(-1))
        print(f"  pymoe.reference agrees with dev_ref: {agree}")
    ok_q = np.array_equal(q.cpu().numpy(), rq)
    ok_s = np.array_equal(sf.cpu().numpy().reshape(-1), np.asarray(rsf).reshape(-1))
    status = "ok" if ok_q and ok_s else "FAIL"
    failures += status != "ok"
    bad = int((q.cpu().numpy() != rq).sum())
    print(f"quantize rows={rows} cols={cols} ld={ld} gs={gs:g} {layout:9s}: codes {'==' if ok_q else f'{bad} differ'}"
          f", scales {'==' if ok_s else 'differ'} -> {status}")


def random_weights(E, rows, k, layout):
    codes = rng.integers(0, 256, (E, rows, k // 2), dtype=np.uint8)
    sf = rng.integers(0x20, 0x40, (E, rows, k // 16)).astype(np.uint8)
    sf[rng.random(sf.shape) < 0.02] = rng.integers(0, 8)  # subnormal and zero scales
    gs = (rng.uniform(0.5, 2.0, E) / 64).astype(np.float32)
    if layout == "swizzled":
        sf = np.stack([dev_ref.swizzle(sf[e], rows, k) for e in range(E)])
    return codes, sf, gs


def moe_case(E, k, H, I, T, act="nvfp4", order="up_gate", layout="row_major", E_local=None, offset=0,
             ids_override=None, per_expert_scale=False, timeit=False):
    global failures
    E_local = E_local or E
    w13, s13, g13 = random_weights(E_local, 2 * I, H, layout)
    w2, s2, g2 = random_weights(E_local, H, I, layout)
    x = dev_ref.bf16(rng.standard_normal((T, H)).astype(np.float32))
    ids = np.stack([rng.permutation(E)[:k] for _ in range(T)]).astype(np.int32) if ids_override is None else ids_override
    tw = rng.uniform(0.1, 1.0, (T, k)).astype(np.float32)
    n_sc = E_local if per_expert_scale else 1
    fc1 = (rng.uniform(0.5, 1.5, n_sc) * np.abs(x).max() / (6 * 448)).astype(np.float32)
    fc2 = (rng.uniform(0.5, 1.5, n_sc) * 0.05).astype(np.float32)

    cfg = Config()
    lib.moe12x_config_init(C.byref(cfg))
    cfg.num_experts, cfg.num_local_experts, cfg.local_expert_offset = E, E_local, offset
    cfg.hidden_size, cfg.intermediate_size, cfg.top_k, cfg.max_tokens = H, I, k, T
    cfg.act_quant = 0 if act == "nvfp4" else 1
    nbytes = C.c_size_t()
    check(lib.moe12x_prepared_weights_size(C.byref(cfg), C.byref(nbytes)), "prepared size")
    prepared = torch.empty(nbytes.value, dtype=torch.uint8, device="cuda")
    dw = [dev(a) for a in (w13, s13, g13, w2, s2, g2)]
    wt = Weights(C.sizeof(Weights), *[C.c_void_p(t.data_ptr()) for t in dw],
                 1 if layout == "swizzled" else 0, 0 if order == "up_gate" else 1)
    check(lib.moe12x_prepare_weights(C.byref(cfg), C.byref(wt), C.c_void_p(prepared.data_ptr()), nbytes, None), "prepare")
    wsb = C.c_size_t()
    check(lib.moe12x_workspace_size(C.byref(cfg), C.c_int64(T), C.byref(wsb)), "workspace size")
    ws = torch.empty(wsb.value, dtype=torch.uint8, device="cuda")
    xd, idsd, twd, f1, f2 = dev(bf16_bits(x)), dev(ids), dev(tw), dev(fc1), dev(fc2)
    out = torch.full((T, H), 0x7FC0, dtype=torch.int16, device="cuda")  # poison: bf16 NaN
    inp = Inputs(C.sizeof(Inputs), T, xd.data_ptr(), idsd.data_ptr(), 0, twd.data_ptr(), 2,
                 f1.data_ptr(), n_sc, f2.data_ptr(), n_sc, out.data_ptr())

    def run():
        check(lib.moe12x_run(C.byref(cfg), C.c_void_p(prepared.data_ptr()), C.byref(inp),
                             C.c_void_p(ws.data_ptr()), wsb, None), "run")

    outs = {}
    for sched in (1, 2):  # static, dynamic: must agree bitwise
        cfg.schedule = sched
        out.fill_(0x7FC0)
        run()
        outs[sched] = out.clone()
    same_sched = torch.equal(outs[1], outs[2])
    cfg.schedule = 0
    torch.cuda.synchronize()
    got = from_bf16_bits(out.cpu().numpy().view(np.uint16))
    want = dev_ref.moe(x, ids, tw, w13, s13, g13, w2, s2, g2, fc1, fc2, E, offset, act, order, layout)
    if ref is not None:
        want2 = ref.moe_forward(x, ids, tw, w13, s13, g13, w2, s2, g2, fc1, fc2, num_experts=E,
                           local_expert_offset=offset, act_quant=act, gate_up_order=order, scale_layout=layout)
        r2 = float(np.linalg.norm(want2 - want) / max(np.linalg.norm(want), 1e-30))
        print(f"  pymoe.reference vs dev_ref rel_l2={r2:.2e}")
    unwritten = int(np.isnan(got).sum())
    rel = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
    first = out.clone()
    run()
    deterministic = torch.equal(first, out)
    tol = 2e-2 if act == "nvfp4" else 5e-3
    status = "ok" if unwritten == 0 and rel < tol and deterministic and same_sched else "FAIL"
    failures += status != "ok"
    t_us = ""
    if timeit:
        for sched, name in ((1, "static"), (2, "dynamic")):
            cfg.schedule = sched
            for _ in range(3):
                run()
            ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev0.record()
            for _ in range(20):
                run()
            ev1.record()
            torch.cuda.synchronize()
            t_us += f" {name} {ev0.elapsed_time(ev1) / 20 * 1e3:.1f}us"
        cfg.schedule = 0
    print(f"moe E={E}/{E_local}@{offset} k={k} H={H} I={I} T={T} {act} {order} {layout}: rel_l2={rel:.2e} "
          f"unwritten={unwritten} det={deterministic} static==dynamic={same_sched}{t_us} -> {status}")


SHAPES = {"qwen3-30b-a3b": (128, 8, 2048, 768), "qwen3-235b-a22b": (128, 8, 4096, 1536),
          "gpt-oss-120b": (128, 4, 2880, 2880), "deepseek-v3": (256, 8, 7168, 2048)}


def bench_shape(name, Ts, act="nvfp4", bw=4.3e12, iters=30, rot=8):
    """Decode timing on random bytes (no reference): eager launches, routing rotated over `rot`
    sets so consecutive calls touch different experts. Efficiency = bytes floor / time."""
    E, k, H, I = SHAPES[name]
    g = torch.Generator(device="cuda").manual_seed(1)
    rb = lambda *shape: torch.randint(0, 256, shape, dtype=torch.uint8, device="cuda", generator=g)
    w13, w2 = rb(E, 2 * I, H // 2), rb(E, H, I // 2)
    s13 = torch.randint(0x28, 0x38, (E, 2 * I, H // 16), dtype=torch.uint8, device="cuda", generator=g)
    s2 = torch.randint(0x28, 0x38, (E, H, I // 16), dtype=torch.uint8, device="cuda", generator=g)
    gs = torch.full((E,), 1 / 64, device="cuda")
    cfg = Config()
    lib.moe12x_config_init(C.byref(cfg))
    cfg.num_experts, cfg.num_local_experts = E, E
    cfg.hidden_size, cfg.intermediate_size, cfg.top_k, cfg.max_tokens = H, I, k, max(Ts)
    cfg.act_quant = 0 if act == "nvfp4" else 1
    nbytes = C.c_size_t()
    check(lib.moe12x_prepared_weights_size(C.byref(cfg), C.byref(nbytes)), "prepared size")
    prepared = torch.empty(nbytes.value, dtype=torch.uint8, device="cuda")
    wt = Weights(C.sizeof(Weights), *[C.c_void_p(t.data_ptr()) for t in (w13, s13, gs, w2, s2, gs)], 0, 0)
    check(lib.moe12x_prepare_weights(C.byref(cfg), C.byref(wt), C.c_void_p(prepared.data_ptr()), nbytes, None), "prepare")
    del w13, w2, s13, s2
    wsb = C.c_size_t()
    check(lib.moe12x_workspace_size(C.byref(cfg), C.c_int64(max(Ts)), C.byref(wsb)), "ws")
    ws = torch.empty(wsb.value, dtype=torch.uint8, device="cuda")
    sc = torch.tensor([0.01], device="cuda")
    for T in Ts:
        x = (torch.randn(T, H, device="cuda") * 0.5).to(torch.bfloat16)
        ids = [torch.argsort(torch.rand(T, E, device="cuda"), dim=1)[:, :k].to(torch.int32).contiguous() for _ in range(rot)]
        tw = torch.rand(T, k, device="cuda")
        out = torch.empty(T, H, dtype=torch.bfloat16, device="cuda")
        touched = sum(len(torch.unique(i)) for i in ids) / rot
        min_bytes = touched * 3 * H * I * 0.5625 + 2 * T * H * 2
        row = f"{name:16s} T={T:4d} {act:5s}"
        for sched, sname in ((1, "static"), (2, "grouped")):
            cfg.schedule = sched
            inps = [Inputs(C.sizeof(Inputs), T, x.data_ptr(), i.data_ptr(), 0, tw.data_ptr(), 2, sc.data_ptr(), 1,
                           sc.data_ptr(), 1, out.data_ptr()) for i in ids]
            for inp in inps[:2]:
                check(lib.moe12x_run(C.byref(cfg), C.c_void_p(prepared.data_ptr()), C.byref(inp), C.c_void_p(ws.data_ptr()), wsb, None), "run")
            ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
            ev[0].record()
            for it in range(iters):
                lib.moe12x_run(C.byref(cfg), C.c_void_p(prepared.data_ptr()), C.byref(inps[it % rot]), C.c_void_p(ws.data_ptr()), wsb, None)
            ev[1].record()
            torch.cuda.synchronize()
            us = ev[0].elapsed_time(ev[1]) / iters * 1e3
            row += f" | {sname} {us:8.1f} us eff {min_bytes / bw / (us * 1e-6):.2f}"
        print(row + f" | floor {min_bytes / bw * 1e6:.1f} us", flush=True)
    cfg.schedule = 0


if __name__ == "__main__" and "--bench" in sys.argv:
    print(torch.cuda.get_device_name())
    for name in SHAPES:
        bench_shape(name, [1, 8, 32, 128])
    sys.exit(0)

if __name__ == "__main__" and "--small" in sys.argv:  # for compute-sanitizer: a few small cases
    quant_case(200, 80, 0.37, True)
    moe_case(8, 2, 128, 128, 5)
    moe_case(8, 2, 256, 128, 37, act="none")
    moe_case(16, 4, 256, 192, 64, order="gate_up", layout="swizzled", per_expert_scale=True, E_local=6, offset=5)
    moe_case(8, 2, 256, 192, 600)  # 150 rows per expert: SM90's 128-row tiles and the FC1 hand-off
    moe_case(16, 8, 128, 128, 520, E_local=8, offset=8)  # 4160 pairs: the two-launch route
    # 7 rows per expert, K = 1024 / 576: the 16-row decode kernel over two K chunks (with
    # MOE12X_WARP_TILES=2 its instantiation that stages FP4 rows a chunk ahead)
    moe_case(8, 2, 1024, 576, 28)
    print(f"{failures} failed")
    sys.exit(1 if failures else 0)

if __name__ == "__main__":
    print(torch.cuda.get_device_name(), "version", lib.moe12x_get_version())
    quant_case(64, 256, 1.0, False)
    quant_case(200, 80, 0.37, True)
    quant_case(130, 128, 1 / (6 * 448), False, ld=160)
    quant_case(33, 64, 0.0, True)
    moe_case(8, 2, 128, 128, 5)
    moe_case(8, 2, 256, 128, 37, act="none")
    moe_case(16, 4, 256, 192, 64, order="gate_up", layout="swizzled", per_expert_scale=True)
    moe_case(16, 4, 320, 128, 64, E_local=6, offset=5)
    moe_case(8, 1, 128, 64, 300, ids_override=np.zeros((300, 1), np.int32))  # all on one expert
    ids = rng.integers(0, 8, (40, 3)).astype(np.int32)
    ids[::3, 0] = -1
    ids[1::3, 1] = 99
    moe_case(8, 3, 192, 128, 40, ids_override=ids)
    moe_case(32, 8, 2048, 768, 16, E_local=32, timeit=True)
    moe_case(32, 8, 2048, 768, 256, E_local=32, timeit=True)
    print(f"{failures} failed")
    sys.exit(1 if failures else 0)
