"""ops references against a naive direct computation, values and gradients (CPU)."""
import math

import numpy as np
import pytest
import torch

from hairlib import ops
from hairlib.ops.upfirdn2d import normalize_args


def naive_upfirdn2d(x: np.ndarray, k: np.ndarray, up, down, pad) -> np.ndarray:
    """Loop form of the definition: zero-insert, pad/crop, true convolution, stride."""
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = normalize_args(up, down, pad)
    n, c, h, w = x.shape
    big = np.zeros((n, c, h * uy, w * ux), x.dtype)
    big[:, :, ::uy, ::ux] = x
    ph, pw = h * uy + py0 + py1, w * ux + px0 + px1
    padded = np.zeros((n, c, ph, pw), x.dtype)
    for yy in range(ph):
        for xx in range(pw):
            sy, sx = yy - py0, xx - px0
            if 0 <= sy < h * uy and 0 <= sx < w * ux:
                padded[:, :, yy, xx] = big[:, :, sy, sx]
    kh, kw = k.shape
    oh, ow = (ph - kh) // dy + 1, (pw - kw) // dx + 1
    out = np.zeros((n, c, oh, ow), x.dtype)
    kf = k[::-1, ::-1]
    for oy in range(oh):
        for ox in range(ow):
            patch = padded[:, :, oy * dy: oy * dy + kh, ox * dx: ox * dx + kw]
            out[:, :, oy, ox] = (patch * kf).sum((2, 3))
    return out


CASES = [
    # (shape, kernel shape, up, down, pad)
    ((2, 3, 8, 8), (4, 4), 2, 1, (2, 1)),        # StyleGAN2 Upsample (ToRGB skip)
    ((2, 3, 9, 9), (4, 4), 1, 1, (1, 1)),        # blur after transposed conv
    ((1, 2, 8, 8), (4, 4), 1, 2, (2, 1)),        # blur before strided conv / downsample
    ((1, 2, 7, 5), (3, 2), (2, 1), (1, 3), (1, 0, 2, 1)),  # anisotropic, odd sizes
    ((1, 1, 6, 6), (5, 5), 3, 2, (-1, 2, 3, -2)),  # negative pads crop
    ((3, 2, 4, 6), (1, 1), 1, 1, (0, 0)),        # identity
]


@pytest.mark.parametrize("shape,kshape,up,down,pad", CASES)
def test_upfirdn2d_ref_matches_naive(shape, kshape, up, down, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    k = torch.randn(*kshape, generator=g, dtype=torch.float64)
    out = ops.upfirdn2d(x, k, up=up, down=down, pad=pad, impl="ref")
    expect = naive_upfirdn2d(x.numpy(), k.numpy(), up, down, pad)
    assert out.shape == expect.shape
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-10, atol=1e-10)


GRAD_CASES = [  # small: gradcheck builds the numerical Jacobian column by column
    ((1, 2, 3, 3), (4, 4), 2, 1, (2, 1)),
    ((1, 1, 5, 4), (3, 3), 1, 1, (1, 1)),
    ((1, 2, 6, 6), (4, 4), 1, 2, (2, 1)),
    ((1, 1, 5, 3), (3, 2), (2, 1), (1, 3), (1, 0, 2, 1)),
    ((1, 1, 4, 4), (5, 5), 3, 2, (-1, 2, 3, -2)),
]


@pytest.mark.parametrize("shape,kshape,up,down,pad", GRAD_CASES)
def test_upfirdn2d_ref_grads_first_and_second_order(shape, kshape, up, down, pad):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*kshape, generator=g, dtype=torch.float64)
    fn = lambda t: ops.upfirdn2d(t, k, up=up, down=down, pad=pad, impl="ref")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    # double backward, as R1 takes it: d/dx of |d(sum f(x)^2)/dx|^2 (nonlinear in x)
    assert torch.autograd.gradgradcheck(lambda t: fn(t) ** 2, (x,))


def test_upfirdn2d_output_size_and_errors():
    x = torch.randn(1, 1, 8, 8)
    k = torch.ones(4, 4) / 16
    assert ops.upfirdn2d(x, k, up=2, pad=(2, 1)).shape[-2:] == (16, 16)
    assert ops.upfirdn2d(x, k, down=2, pad=(1, 1)).shape[-2:] == (4, 4)
    with pytest.raises(ValueError, match="expects x"):
        ops.upfirdn2d(x[0], k)
    with pytest.raises(ValueError, match="empty output"):
        ops.upfirdn2d(x, k, pad=(-4, -4))
    with pytest.raises(ValueError, match=">= 1"):
        ops.upfirdn2d(x, k, up=0)


def test_fused_leaky_relu_ref_matches_formula_and_honours_slope():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    for slope, scale in [(0.2, math.sqrt(2)), (0.05, 1.0), (0.0, 3.0)]:
        out = ops.fused_leaky_relu(x, b, slope, scale, impl="ref")
        v = x.numpy() + b.numpy()[None, :, None, None]
        expect = np.where(v >= 0, v, v * slope) * scale
        np.testing.assert_allclose(out.numpy(), expect, rtol=1e-12)
    # 2-D input (EqualLinear) and no bias
    y = torch.randn(3, 5, dtype=torch.float64)
    np.testing.assert_allclose(ops.fused_leaky_relu(y, None, 0.1, 2.0).numpy(),
                               np.where(y.numpy() >= 0, y.numpy(), 0.1 * y.numpy()) * 2.0)


def test_fused_leaky_relu_ref_double_backward():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda t, bb: ops.fused_leaky_relu(t, bb, impl="ref") ** 2  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_fused_leaky_relu_bad_bias():
    with pytest.raises(ValueError, match="bias"):
        ops.fused_leaky_relu(torch.randn(2, 3, 4), torch.zeros(4))


def test_backend_selection(monkeypatch):
    x = torch.randn(1, 1, 4, 4)
    k = torch.ones(1, 1)
    monkeypatch.setenv("HAIRLIB_OPS", "bogus")
    with pytest.raises(ValueError, match="HAIRLIB_OPS"):
        ops.upfirdn2d(x, k)
    monkeypatch.setenv("HAIRLIB_OPS", "ref")
    assert torch.equal(ops.upfirdn2d(x, k), x)
    monkeypatch.setenv("HAIRLIB_OPS", "auto")
    assert torch.equal(ops.upfirdn2d(x, k), x)  # auto on CPU -> reference, no warning, no build
    report = ops.backend_report()
    assert report["requested"] == "auto"
    if not torch.cuda.is_available():
        assert "no CUDA device" in report["upfirdn2d"]


def test_autotune_keeps_the_fastest_and_caches(monkeypatch):
    import time

    from hairlib.ops import _build

    calls = {"slow": 0, "fast": 0}

    def slow():
        calls["slow"] += 1
        time.sleep(0.004)

    def fast():
        calls["fast"] += 1

    key = ("test-op", "cpu", 1)
    assert _build.autotune(key, {"slow": slow, "fast": fast}, repeats=3) == "fast"
    n = dict(calls)
    assert _build.autotune(key, {"slow": slow, "fast": fast}) == "fast"
    assert calls == n  # cached: nothing timed again
    assert _build.tuned_choices()[key] == "fast"
