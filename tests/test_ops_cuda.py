"""ops CUDA backends against the pure-PyTorch references: values, first and second derivatives.

GPU tests (marked ``gpu``) skip without a CUDA device. fp32 results of our kernels are compared
with the reference evaluated in float64 (which also keeps cuDNN's TF32 convolutions out of the
comparison) to 1e-5 of the result's magnitude (max abs diff <= 1e-5 * max(1, max |ref|)); half
to 1e-2 likewise; float64 to 1e-10. The CPU tests check the error for CPU tensors and the
autograd wiring of the CUDA Functions with a pure-PyTorch stand-in for the extension.
"""
import math

import pytest
import torch

from hairlib import ops
from hairlib.ops import bias_act_cuda, upfirdn2d_cuda
from hairlib.ops.bias_act import fused_leaky_relu_ref
from hairlib.ops.upfirdn2d import normalize_args, upfirdn2d_ref


def assert_close(out: torch.Tensor, ref: torch.Tensor, tol: float):
    assert out.shape == ref.shape, (out.shape, ref.shape)
    diff = (out.double() - ref.double()).abs().max().item()
    bound = tol * max(1.0, ref.double().abs().max().item())
    assert diff <= bound, f"max abs diff {diff:.3g} > {bound:.3g}"


TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.float64: 1e-10}


def blur(taps=(1, 3, 3, 1), gain=1.0, device="cuda"):
    """StyleGAN2's make_kernel: normalised outer product, times gain (up**2 after upsampling)."""
    k = torch.tensor(taps, dtype=torch.float64)
    k = k[:, None] * k[None, :]
    return (k / k.sum() * gain).to(device=device, dtype=torch.float32)


# (x shape, kernel: "blur", "blur_up" (x4) or a shape for a random kernel, up, down, pad)
UPFIRDN_CASES = [
    # rosinality's StyleGAN2 configurations
    ((2, 3, 8, 8), "blur_up", 2, 1, (2, 1)),        # Upsample (ToRGB skip), small -> direct kernel
    ((2, 3, 64, 64), "blur_up", 2, 1, (2, 1)),      # Upsample, large -> tiled kernel
    ((2, 4, 32, 32), "blur", 1, 2, (1, 1)),         # Downsample (discriminator skip)
    ((2, 4, 32, 32), "blur", 1, 2, (2, 1)),
    ((2, 3, 17, 17), "blur_up", 1, 1, (1, 1)),      # blur after the stride-2 transposed conv
    ((2, 3, 34, 34), "blur", 1, 1, (2, 2)),         # blur before a stride-2 3x3 conv
    ((2, 3, 33, 33), "blur", 1, 1, (1, 1)),         # blur before a stride-2 1x1 conv
    ((1, 2, 4, 4), "blur_up", 2, 1, (2, 1)),        # 4x4 (lowest resolution)
    # odd ones
    ((1, 2, 48, 64), "blur", 1, 1, (1, 1)),         # H != W
    ((1, 2, 7, 5), (3, 2), (2, 1), (1, 3), (1, 0, 2, 1)),
    ((2, 2, 40, 24), (3, 5), (1, 2), 3, (2, 3, 0, 4)),   # non-square kernel, down=3
    ((1, 3, 37, 29), (4, 4), 2, 2, (-2, -1, 3, -3)),     # up and down, negative pads
    ((1, 1, 6, 6), (5, 5), 3, 2, (-1, 2, 3, -2)),
    ((2, 3, 50, 45), (5, 3), (2, 3), (3, 1), (0, -2, 4, 1)),
    ((1, 2, 70, 70), (12, 12), 1, 4, (5, 6)),       # large kernel and stride
    ((1, 1, 40, 40), (2, 2), 5, 1, (-3, -4)),       # up > kernel: some outputs have no taps
    ((3, 2, 4, 6), (1, 1), 1, 1, (0, 0)),           # identity
]


def make_kernel(spec, device="cuda", seed=0):
    if spec == "blur":
        return blur(device=device)
    if spec == "blur_up":
        return blur(gain=4.0, device=device)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*spec, generator=g, dtype=torch.float64).to(device=device, dtype=torch.float32)


def rand(*shape, dtype=torch.float32, seed=0, device="cuda"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def case_id(case):
    shape, kern, up, down, pad = case
    kname = kern if isinstance(kern, str) else "x".join(map(str, kern))
    return f"{'x'.join(map(str, shape))}-k{kname}-up{up}-down{down}-pad{pad}"


# ------------------------------------------------------------------------------------- upfirdn2d


@pytest.mark.parametrize("case", UPFIRDN_CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_upfirdn2d_cuda_forward(case, dtype):
    shape, kern, up, down, pad = case
    k = make_kernel(kern)
    x = rand(*shape, dtype=dtype)
    out = ops.upfirdn2d(x, k, up=up, down=down, pad=pad, impl="cuda")
    ref = ops.upfirdn2d(x.double(), k.double(), up=up, down=down, pad=pad, impl="ref")
    assert out.dtype == dtype and out.is_cuda
    assert_close(out, ref, TOL[dtype])


@pytest.mark.parametrize("case", UPFIRDN_CASES, ids=case_id)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_upfirdn2d_cuda_both_kernels(case):
    """The direct and the shared-memory tiled kernel, each forced, on every configuration it can run."""
    shape, kern, up, down, pad = case
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = normalize_args(up, down, pad)
    ext = upfirdn2d_cuda._ext()
    for dtype in (torch.float32, torch.float64, torch.float16):
        k = make_kernel(kern).to(dtype)
        x = rand(*shape, dtype=dtype)
        ref = upfirdn2d_ref(x.double(), k.double(), up, down, pad)
        for path in (1, 2):
            try:
                out = ext.upfirdn2d(x, k, ux, uy, dx, dy, px0, px1, py0, py1, path)
            except RuntimeError as e:  # the tiled kernel refuses small outputs and oversized tiles
                assert path == 2 and "tiled kernel cannot run" in str(e)
                continue
            assert_close(out, ref, TOL[dtype])


@pytest.mark.parametrize("case", UPFIRDN_CASES, ids=case_id)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_upfirdn2d_cuda_first_and_second_order_grads(case):
    """grad (torch.autograd.grad) and an R1-like second derivative: d/dx |d sum(w f(x)^2)/dx|^2."""
    shape, kern, up, down, pad = case
    k = make_kernel(kern)
    x0 = rand(*shape, seed=1)

    def grads(impl, dtype):
        x = x0.to(dtype).requires_grad_(True)
        y = ops.upfirdn2d(x, k.to(dtype), up=up, down=down, pad=pad, impl=impl)
        w = rand(*y.shape, seed=2, dtype=dtype)
        (g1,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)      # first order (linear)
        (g2,) = torch.autograd.grad((w * y * y).sum(), x, create_graph=True)  # depends on x
        (gg,) = torch.autograd.grad(g2.pow(2).sum(), x)                        # second order (R1)
        return g1, g2, gg

    for out, ref in zip(grads("cuda", torch.float32), grads("ref", torch.float64)):
        assert_close(out, ref, 1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_upfirdn2d_cuda_gradcheck_float64():
    x = rand(1, 2, 6, 5, dtype=torch.float64, seed=3).requires_grad_(True)
    k = rand(3, 4, dtype=torch.float64, seed=4)
    for up, down, pad in [(2, 1, (2, 1)), (1, 2, (1, 1)), ((2, 1), (1, 3), (1, 0, 2, -1))]:
        fn = lambda t: ops.upfirdn2d(t, k, up=up, down=down, pad=pad, impl="cuda")  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(lambda t: fn(t) ** 2, (x,))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_upfirdn2d_cuda_grid_limits():
    """More than 65535 planes (grid z) and more than 65535 row tiles (grid y), both kernels."""
    k = blur()
    ext = upfirdn2d_cuda._ext()
    many_planes = rand(2, 33000, 16, 16)                # 66000 planes; 16x16 output with pad (2, 1)
    tall = rand(1, 1, 2_200_000, 16)                    # 68750 tiles of 32 rows
    for x, pad in [(many_planes, (2, 1)), (tall, (2, 1)), (rand(1, 70000, 4, 4), (1, 1))]:
        ref = upfirdn2d_ref(x.double(), k.double(), 1, 1, pad)
        assert_close(ops.upfirdn2d(x, k, pad=pad, impl="cuda"), ref, 1e-5)
        for path in (1, 2):
            if path == 2 and min(ref.shape[-2:]) < 16:
                continue
            out = ext.upfirdn2d(x, k, 1, 1, 1, 1, pad[0], pad[1], pad[0], pad[1], path)
            assert_close(out, ref, 1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_upfirdn2d_cuda_noncontiguous_input_and_auto():
    k = blur(gain=4.0)
    x = rand(2, 16, 16, 3).permute(0, 3, 1, 2)  # [2, 3, 16, 16], not contiguous
    ref = upfirdn2d_ref(x.double(), k.double(), 2, 1, (2, 1))
    assert_close(ops.upfirdn2d(x, k, up=2, pad=(2, 1), impl="cuda"), ref, 1e-5)
    assert_close(ops.upfirdn2d(x, k, up=2, pad=(2, 1), impl="auto"), ref, 1e-2)  # either backend (ref may use TF32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_upfirdn2d_cuda_extension_rejects_bad_input():
    ext = upfirdn2d_cuda._ext()
    x = rand(1, 1, 8, 8)
    k = blur()
    with pytest.raises(RuntimeError, match="dtype"):
        ext.upfirdn2d(x, k.double(), 1, 1, 1, 1, 0, 0, 0, 0)
    with pytest.raises(RuntimeError, match="contiguous"):
        ext.upfirdn2d(x.transpose(2, 3), k, 1, 1, 1, 1, 0, 0, 0, 0)
    with pytest.raises(RuntimeError, match="empty output"):
        ext.upfirdn2d(x, k, 1, 1, 1, 1, -4, -4, 0, 0)
    with pytest.raises(RuntimeError, match="CUDA"):
        ext.upfirdn2d(x.cpu(), k.cpu(), 1, 1, 1, 1, 0, 0, 0, 0)


# -------------------------------------------------------------------------------- fused_leaky_relu

# (x shape, with bias, negative slope, scale)
BIAS_ACT_CASES = [
    ((2, 3, 4, 4), True, 0.2, math.sqrt(2)),     # StyleGAN2 conv activation (inner 16: vectorised)
    ((4, 512), True, 0.2, math.sqrt(2)),         # EqualLinear (inner 1: scalar path)
    ((2, 5, 7, 3), True, 0.1, 1.0),              # inner 21: scalar path
    ((2, 8, 32, 32), True, 0.0, 2.0),            # plain ReLU
    ((2, 3, 2, 4, 4), True, 0.2, 0.5),           # 5-D
    ((3, 6, 8), False, 0.2, math.sqrt(2)),       # no bias
    ((1000,), False, 0.3, 1.5),                  # 1-D, no bias
    ((2, 70000, 1, 1), True, 0.2, math.sqrt(2)),  # many channels
]


def bias_act_id(case):
    shape, bias, slope, scale = case
    return f"{'x'.join(map(str, shape))}-{'bias' if bias else 'nobias'}-s{slope}-g{scale:.3g}"


@pytest.mark.parametrize("case", BIAS_ACT_CASES, ids=bias_act_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_leaky_relu_cuda_forward(case, dtype):
    shape, has_bias, slope, scale = case
    x = rand(*shape, dtype=dtype)
    b = rand(shape[1], dtype=dtype, seed=1) if has_bias else None
    out = ops.fused_leaky_relu(x, b, slope, scale, impl="cuda")
    ref = ops.fused_leaky_relu(x.double(), None if b is None else b.double(), slope, scale, impl="ref")
    assert out.dtype == dtype
    assert_close(out, ref, TOL[dtype])
    if dtype != torch.float16:  # same precision: the same numbers
        assert_close(out, ops.fused_leaky_relu(x, b, slope, scale, impl="ref"), TOL[dtype])


@pytest.mark.parametrize("case", BIAS_ACT_CASES, ids=bias_act_id)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_leaky_relu_cuda_first_and_second_order_grads(case):
    shape, has_bias, slope, scale = case
    x0 = rand(*shape, seed=3)
    b0 = rand(shape[1], seed=4) if has_bias else None

    def grads(impl, dtype):
        x = x0.to(dtype).requires_grad_(True)
        inputs = [x]
        b = None
        if b0 is not None:
            b = b0.to(dtype).requires_grad_(True)
            inputs.append(b)
        y = ops.fused_leaky_relu(x, b, slope, scale, impl=impl)
        w = rand(*y.shape, seed=5, dtype=dtype)
        g1 = torch.autograd.grad((y * w).sum(), inputs, create_graph=True)
        g2 = torch.autograd.grad((w * y * y).sum(), inputs, create_graph=True)
        penalty = sum(g.pow(2).sum() for g in g2)  # R1-like, through grad_x and grad_b
        gg = torch.autograd.grad(penalty, inputs)
        return [*g1, *g2, *gg]

    for out, ref in zip(grads("cuda", torch.float32), grads("ref", torch.float64)):
        assert_close(out, ref, 1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_leaky_relu_cuda_gradcheck_float64():
    x = rand(2, 3, 4, 4, dtype=torch.float64, seed=6).requires_grad_(True)
    b = rand(3, dtype=torch.float64, seed=7).requires_grad_(True)
    fn = lambda t, bb: ops.fused_leaky_relu(t, bb, impl="cuda") ** 2  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_leaky_relu_cuda_mask_matches_reference_exactly():
    """The branch is taken on x + b as the reference does, including x + b == 0 (slope side)."""
    b = torch.tensor([0.5, -0.25, 0.0], device="cuda")
    x = torch.tensor([-0.5, 0.25, 0.0, -0.5 + 2 ** -20, 0.25 - 2 ** -20, 1e-30], device="cuda")
    x = x[None, None, :].expand(2, 3, 6).contiguous().requires_grad_(True)
    grads = []
    for impl in ("cuda", "ref"):
        bb = b.clone().requires_grad_(True)
        y = ops.fused_leaky_relu(x, bb, 0.2, math.sqrt(2), impl=impl)
        grads.append(torch.autograd.grad(y.sum(), [x, bb]))
    assert_close(grads[0][0], grads[1][0], 1e-6)  # a wrong branch would be off by (1 - 0.2) * sqrt(2)
    assert_close(grads[0][1], grads[1][1], 1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_leaky_relu_cuda_unaligned_noncontiguous_and_float32_bias():
    base = rand(2 * 4 * 8 * 8 + 1)
    x = base[1:].view(2, 4, 8, 8)  # storage offset 1: not 16-byte aligned -> scalar path
    b = rand(4, seed=1)
    assert_close(ops.fused_leaky_relu(x, b, impl="cuda"), fused_leaky_relu_ref(x.double(), b.double()), 1e-5)
    xt = rand(2, 8, 8, 4).permute(0, 3, 1, 2)  # not contiguous
    assert_close(ops.fused_leaky_relu(xt, b, impl="cuda"), fused_leaky_relu_ref(xt.double(), b.double()), 1e-5)
    # half activations with a float32 bias parameter: the bias gradient comes back in float32
    xh = rand(2, 4, 8, 8, dtype=torch.float16)
    bf = b.clone().requires_grad_(True)
    y = ops.fused_leaky_relu(xh, bf, impl="cuda")
    (gb,) = torch.autograd.grad(y.float().sum(), bf)
    assert gb.dtype == torch.float32
    bref = b.double().requires_grad_(True)
    (gb_ref,) = torch.autograd.grad(fused_leaky_relu_ref(xh.double(), bref).sum(), bref)
    assert_close(gb, gb_ref, 1e-2)


# ----------------------------------------------------------------------------------- CPU: no GPU


def test_impl_cuda_on_cpu_tensor_raises():
    x = torch.randn(1, 1, 4, 4)
    k = torch.ones(2, 2)
    with pytest.raises(RuntimeError, match="CUDA"):
        ops.upfirdn2d(x, k, impl="cuda")
    with pytest.raises(RuntimeError, match="CUDA"):
        ops.fused_leaky_relu(torch.randn(2, 3), torch.zeros(3), impl="cuda")
    with pytest.raises(RuntimeError, match="CUDA"):
        upfirdn2d_cuda.upfirdn2d_cuda(x, k, (1, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(RuntimeError, match="CUDA"):
        bias_act_cuda.fused_leaky_relu_cuda(torch.randn(2, 3), None, 0.2, 1.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_cuda_backends_unavailable_without_gpu():
    assert upfirdn2d_cuda.available() is False
    assert bias_act_cuda.available() is False
    with pytest.raises(RuntimeError, match="no CUDA device"):
        upfirdn2d_cuda.available(required=True)


class _StandInUpfirdn2d:
    """The extension's interface, computed by the reference (to test the autograd wiring on CPU)."""

    @staticmethod
    def upfirdn2d(x, k, ux, uy, dx, dy, px0, px1, py0, py1, path=0):
        assert x.is_contiguous() and k.is_contiguous() and k.dtype == x.dtype
        return upfirdn2d_ref(x, k, (ux, uy), (dx, dy), (px0, px1, py0, py1))


class _StandInBiasAct:
    @staticmethod
    def _bcast(b, x):
        return b.view(1, -1, *([1] * (x.ndim - 2))) if b.numel() else 0

    @classmethod
    def fused_bias_act(cls, x, b, slope, scale):
        v = x + cls._bcast(b, x)
        return torch.where(v > 0, v, v * slope) * scale

    @classmethod
    def fused_bias_act_grad(cls, g, gb, x, b, slope, scale):
        u = g + cls._bcast(gb, x)
        return torch.where(x + cls._bcast(b, x) > 0, u, u * slope) * scale


@pytest.mark.parametrize("up,down,pad", [((2, 2), (1, 1), (2, 1, 2, 1)), ((1, 1), (2, 2), (1, 1, 1, 1)),
                                         ((2, 1), (1, 3), (1, 0, 2, 1)), ((3, 3), (2, 2), (-1, 2, 3, -2))])
def test_upfirdn2d_autograd_wiring_cpu(monkeypatch, up, down, pad):
    """_UpFirDn2d's adjoint pads and recursion give the reference's gradients to second order."""
    monkeypatch.setattr(upfirdn2d_cuda, "_ext", lambda: _StandInUpfirdn2d)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 3, generator=g, dtype=torch.float64)
    fn = lambda t: upfirdn2d_cuda._UpFirDn2d.apply(t, k, up, down, pad)  # noqa: E731
    assert torch.allclose(fn(x), upfirdn2d_ref(x, k, up, down, pad))
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(lambda t: fn(t) ** 2, (x,))


@pytest.mark.parametrize("shape,has_bias", [((2, 3, 4, 4), True), ((4, 5), True), ((3, 4, 2), False)])
def test_fused_leaky_relu_autograd_wiring_cpu(monkeypatch, shape, has_bias):
    monkeypatch.setattr(bias_act_cuda, "_ext", lambda: _StandInBiasAct)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape[1], generator=g, dtype=torch.float64, requires_grad=True) if has_bias else None
    inputs = (x, b) if has_bias else (x,)
    fn = lambda t, bb=None: bias_act_cuda._FusedLeakyReLU.apply(t, bb, 0.2, math.sqrt(2)) ** 2  # noqa: E731
    assert torch.allclose(fn(x, b), fused_leaky_relu_ref(x, b) ** 2)
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)
    # third order too: the backward of the backward is the same Function again
    y = bias_act_cuda._FusedLeakyReLU.apply(x, b, 0.2, math.sqrt(2))
    gx = torch.autograd.grad((y ** 3).sum(), x, create_graph=True)[0]
    gxx = torch.autograd.grad((gx ** 3).sum(), x, create_graph=True)[0]
    gxxx = torch.autograd.grad(gxx.sum(), x)[0]
    yr = fused_leaky_relu_ref(x, b)
    rx = torch.autograd.grad((yr ** 3).sum(), x, create_graph=True)[0]
    rxx = torch.autograd.grad((rx ** 3).sum(), x, create_graph=True)[0]
    assert torch.allclose(gxxx, torch.autograd.grad(rxx.sum(), x)[0])


# ---- the kernels build with this machine's nvcc (no GPU needed) --------------------------------

def _nvcc_with_headers() -> bool:
    import shutil
    from pathlib import Path

    from torch.utils import cpp_extension

    if shutil.which("nvcc") is None or torch.version.cuda is None:
        return False
    return any((Path(h) / "include" / "cuda_runtime.h").exists()
               for h in (cpp_extension.CUDA_HOME or "", "/usr/local/cuda") if h)


@pytest.mark.skipif(not _nvcc_with_headers(), reason="no nvcc with CUDA headers, or a CPU-only torch")
@pytest.mark.parametrize("name, sources, function", [
    ("upfirdn2d", ["upfirdn2d.cpp", "upfirdn2d_kernel.cu"], "upfirdn2d"),
    ("bias_act", ["bias_act.cpp", "bias_act_kernel.cu"], "fused_bias_act"),
])
def test_the_cuda_kernels_compile_with_nvcc(tmp_path, name, sources, function):
    from hairlib.ops import _build

    module = _build.compile_cuda(name, sources, tmp_path, arch="8.0")
    assert callable(getattr(module, function))
