"""The public GPU quantizer pymoe.quantize_nvfp4 against pymoe.reference.quantize_nvfp4: bit for
bit (q bytes and scale bytes, padding of the swizzled layout included), SPEC §2.

Inputs: random bf16 blocks of many kinds — a wide dynamic range (2^-30..2^12 per block), blocks
needing subnormal e4m3 scales, saturating blocks (scale clamps at 448), all-zero blocks, blocks
of +0/-0, exact e2m1 rounding ties, exact e4m3 scale ties, bf16 subnormals, single non-zero
elements — with rows that are not a multiple of 128, scale columns that are not a multiple of
4, and a row stride larger than cols (the padding holds NaN, which must never be read). Global
scales 1.0, 0.37, amax/(6*448) (ModelOpt style), 3e-5 and 0.0, both scale layouts.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_util as G  # noqa: E402
from gpu_util import requires_gpu  # noqa: E402

pytestmark = [pytest.mark.gpu]

# e2m1 magnitudes and the midpoints between neighbours (exact ties when the block scale is a
# power of two and gs = 1)
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])
E2M1_MID = (E2M1[1:] + E2M1[:-1]) / 2  # 0.25 0.75 1.25 1.75 2.5 3.5 5

KINDS = ["wide", "zero", "signed_zero", "e2m1_ties", "subnormal_scale", "saturate",
         "scale_tie", "bf16_subnormal", "single"]


def make_quant_input(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """bf16 bits [rows, cols], each 16-block of one kind (KINDS), mostly "wide"."""
    nb = cols // 16
    kinds = rng.choice(len(KINDS), size=(rows, nb),
                       p=[0.46, 0.05, 0.05, 0.12, 0.10, 0.06, 0.06, 0.05, 0.05])
    out = np.zeros((rows, nb, 16), np.float32)
    sign = np.where(rng.random((rows, nb, 16)) < 0.5, -1.0, 1.0).astype(np.float32)
    for k, name in enumerate(KINDS):
        m = kinds == k
        n = int(m.sum())
        if n == 0:
            continue
        if name == "wide":
            v = rng.standard_normal((n, 16)) * 2.0 ** rng.uniform(-30, 12, size=(n, 1))
        elif name == "zero":
            v = np.zeros((n, 16))
        elif name == "signed_zero":
            v = np.zeros((n, 16))  # sign applied below: a mix of +0 and -0
        elif name == "e2m1_ties":
            s = 2.0 ** rng.integers(-9, 8, size=(n, 1))           # scale exactly representable
            vals = np.concatenate([E2M1, E2M1_MID])
            v = vals[rng.integers(0, len(vals), size=(n, 16))] * s
            v[:, 0] = 6.0 * s[:, 0]                               # amax = 6 s -> sf = s
        elif name == "subnormal_scale":
            # amax / 6 within e4m3's subnormal range [2^-9, 2^-6) (for gs = 1)
            amax = 6.0 * 2.0 ** rng.uniform(-10, -6, size=(n, 1))
            v = rng.uniform(-1, 1, size=(n, 16)) * amax
            v[:, 0] = amax[:, 0]
        elif name == "saturate":
            v = rng.standard_normal((n, 16)) * 2.0 ** rng.uniform(9, 16, size=(n, 1))
        elif name == "scale_tie":
            # amax / 6 exactly halfway between two e4m3 values: 6 * (1 + 1/16) * 2^j
            j = rng.integers(-8, 7, size=(n, 1))
            amax = 6.0 * (1.0 + 1.0 / 16.0) * 2.0 ** j
            v = rng.uniform(-1, 1, size=(n, 16)) * amax
            v[:, 3] = amax[:, 0]
        elif name == "bf16_subnormal":
            v = rng.uniform(-1, 1, size=(n, 16)) * 2.0 ** -130
        elif name == "single":
            v = np.zeros((n, 16))
            v[np.arange(n), rng.integers(0, 16, n)] = rng.standard_normal(n) * 2.0 ** rng.uniform(
                -12, 8, n)
        out[m] = v.astype(np.float32)
    out = np.abs(out) * sign  # -0 where the value is 0 and the sign negative
    bits = G.f32_to_bf16_bits(out.reshape(rows, cols))
    return bits


# (rows, cols, ld): rows not multiples of 128; cols/16 = 1, 3, 17 not multiples of 4; ld > cols
SHAPES = [(1, 16, 16), (37, 48, 64), (300, 272, 336), (128, 4096, 4096), (200, 2880, 2944)]
GLOBAL_SCALES = ["1.0", "0.37", "modelopt", "3e-5", "0.0"]


def _gs_value(name: str, x_f32: np.ndarray) -> np.float32:
    if name == "modelopt":
        return np.float32(np.abs(x_f32).max() / (6.0 * 448.0))
    return np.float32(float(name))


def _report(label, got, want, x_bits=None, cols=None, per_row=None):
    ne = np.nonzero(got != want)[0]
    if ne.size == 0:
        return
    lines = []
    for i in ne[:6]:
        extra = ""
        if per_row and x_bits is not None:
            r, c = divmod(int(i), per_row)
            blk = (c * (cols // per_row)) // 16
            vals = G.bf16_bits_to_f32(x_bits[r, blk * 16:(blk + 1) * 16])
            extra = f" row {r} block {blk}: {np.array2string(vals, precision=4)}"
        lines.append(f"  byte {int(i)}: gpu 0x{int(got[i]):02x} ref 0x{int(want[i]):02x}{extra}")
    raise AssertionError(f"{label}: {ne.size} of {got.size} bytes differ\n" + "\n".join(lines))


@requires_gpu
@pytest.mark.parametrize("scale_layout", ["row_major", "swizzled"])
@pytest.mark.parametrize("gs_name", GLOBAL_SCALES)
@pytest.mark.parametrize("rows,cols,ld", SHAPES)
def test_quantizer_bit_exact(rows, cols, ld, gs_name, scale_layout):
    import pymoe
    from pymoe import reference
    torch = G.torch
    rng = np.random.default_rng(rows * 7919 + cols)
    x_bits = make_quant_input(rng, rows, cols)
    x_f32 = G.bf16_bits_to_f32(x_bits)
    gs = _gs_value(gs_name, x_f32)

    # device x with row stride ld; the padding columns hold NaN and must not be read
    buf = np.full((rows, ld), G.BF16_NAN_BITS, np.uint16)
    buf[:, :cols] = x_bits
    x_full = G.dev_bf16(buf)
    x_dev = x_full[:, :cols]
    g_dev = torch.tensor([float(gs)], dtype=torch.float32, device="cuda")
    nsf = pymoe.scale_bytes(rows, cols, scale_layout)
    assert nsf == int(reference.scale_bytes(rows, cols, scale_layout))
    q_dev = torch.full((rows, cols // 2), 0xAB, dtype=torch.uint8, device="cuda")
    if scale_layout == "row_major":
        assert nsf == rows * (cols // 16)
        sf_dev = torch.full((rows, cols // 16), 0xAB, dtype=torch.uint8, device="cuda")
    else:
        sf_dev = torch.full((nsf,), 0xAB, dtype=torch.uint8, device="cuda")
    pymoe.quantize_nvfp4(x_dev, g_dev, q_dev, sf_dev, scale_layout=scale_layout,
                         stream=G.stream())
    G.sync()
    q_ref, sf_ref = reference.quantize_nvfp4(x_f32, gs, scale_layout)
    q_ref = np.asarray(q_ref, np.uint8).reshape(-1)
    sf_ref = np.asarray(sf_ref, np.uint8).reshape(-1)
    q_got = q_dev.cpu().numpy().reshape(-1)
    sf_got = sf_dev.cpu().numpy().reshape(-1)
    assert sf_ref.size == nsf, (sf_ref.size, nsf)
    label = f"rows={rows} cols={cols} ld={ld} gs={gs_name}({float(gs):.4g}) {scale_layout}"
    _report(label + " scales", sf_got, sf_ref,
            x_bits if scale_layout == "row_major" else None, cols, cols // 16)
    _report(label + " codes", q_got, q_ref, x_bits, cols, cols // 2)
    if float(gs) == 0.0:
        assert not sf_got.any(), "gs == 0 must give zero scales"
    # and the source is untouched (the quantizer only reads x)
    assert (G.bits(x_full) == buf).all(), "the quantizer wrote into its input"


@requires_gpu
def test_quantizer_on_a_non_default_stream_and_stream_object():
    """Same bytes when run on a side stream, given as an int handle and as a stream object."""
    import pymoe
    torch = G.torch
    rng = np.random.default_rng(1)
    x_bits = make_quant_input(rng, 64, 256)
    x = G.dev_bf16(x_bits)
    g = torch.tensor([0.37], dtype=torch.float32, device="cuda")
    outs = []
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    for handle in (G.stream(), s.cuda_stream, s):
        if not isinstance(handle, int) and not hasattr(handle, "__cuda_stream__"):
            continue
        q = torch.full((64, 128), 0xAB, dtype=torch.uint8, device="cuda")
        sf = torch.full((64, 16), 0xAB, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        pymoe.quantize_nvfp4(x, g, q, sf, stream=handle)
        torch.cuda.synchronize()
        outs.append((q.cpu().numpy(), sf.cpu().numpy()))
    for q, sf in outs[1:]:
        assert (q == outs[0][0]).all() and (sf == outs[0][1]).all()


@requires_gpu
def test_quantizer_rejects_bad_arguments_and_writes_nothing():
    import pymoe
    torch = G.torch
    rows, cols = 32, 64
    x = G.dev_bf16(make_quant_input(np.random.default_rng(2), rows, cols))
    g = torch.tensor([1.0], dtype=torch.float32, device="cuda")

    def outs(qshape=(rows, cols // 2), sfshape=(rows, cols // 16)):
        return (torch.full(qshape, 0xAB, dtype=torch.uint8, device="cuda"),
                torch.full(sfshape, 0xAB, dtype=torch.uint8, device="cuda"))

    cases = [
        ("x float32", dict(x=x.float()), TypeError),
        ("x cols % 16", dict(x=x[:, :40].contiguous(), q=outs((rows, 20))[0],
                             sf=outs(sfshape=(rows * 3,))[1]), ValueError),
        ("x on cpu", dict(x=x.cpu()), ValueError),
        ("q too small", dict(q=outs((rows, cols // 2 - 1))[0]), ValueError),
        ("q wrong dtype", dict(q=torch.zeros((rows, cols // 4), dtype=torch.int16,
                                             device="cuda")), TypeError),
        ("sf too small", dict(sf=outs(sfshape=(rows, cols // 16 - 1))[1]), ValueError),
        ("gs float64", dict(g=g.double()), TypeError),
        ("gs on cpu", dict(g=g.cpu()), ValueError),
        ("bad layout", dict(layout="col_major"), ValueError),
    ]
    for name, over, exc in cases:
        q, sf = outs()
        args = dict(x=x, g=g, q=q, sf=sf, layout="row_major")
        args.update(over)
        q_before, sf_before = args["q"].clone(), args["sf"].clone()
        with pytest.raises(exc):
            pymoe.quantize_nvfp4(args["x"], args["g"], args["q"], args["sf"],
                                 scale_layout=args["layout"], stream=G.stream())
        torch.cuda.synchronize()
        assert torch.equal(args["q"], q_before), f"{name}: q written"
        assert torch.equal(args["sf"], sf_before), f"{name}: scales written"
