"""upfirdn2d: upsample by zero insertion, pad, filter with a 2-D FIR kernel, downsample.

The resampling primitive of StyleGAN2 (blur before strided convolutions, upsampling of the
skip connections). Same arguments and semantics as rosinality/stylegan2-pytorch's ``upfirdn2d``
so that checkpoints trained against it give identical outputs.

Backends (see ``hairlib.ops._build``): a pure-PyTorch reference (any device, double backward), our
CUDA kernel (``upfirdn2d_kernel.cu``) and our CPU kernel for channels-last tensors and separable
filters (``upfirdn2d_cpu.cpp``; "auto" takes it for bfloat16 or channels-last tensors, i.e. on
the fast training path), chosen by ``impl=`` or ``$HAIRLIB_OPS``.
"""
from __future__ import annotations

from collections import abc
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import _build

__all__ = ["upfirdn2d", "upfirdn2d_ref", "normalize_args"]

IntPair = Union[int, Sequence[int]]


def normalize_args(up: IntPair, down: IntPair, pad: Sequence[int]) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int, int, int]]:
    """-> (up_x, up_y), (down_x, down_y), (pad_x0, pad_x1, pad_y0, pad_y1)."""
    up = tuple(up) if isinstance(up, abc.Iterable) else (up, up)
    down = tuple(down) if isinstance(down, abc.Iterable) else (down, down)
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        pad = (pad[0], pad[1], pad[0], pad[1])
    if len(up) != 2 or len(down) != 2 or len(pad) != 4:
        raise ValueError(f"upfirdn2d: bad up={up}, down={down}, pad={pad}")
    if min(up) < 1 or min(down) < 1:
        raise ValueError(f"upfirdn2d: up and down factors must be >= 1, got up={up}, down={down}")
    return (int(up[0]), int(up[1])), (int(down[0]), int(down[1])), pad


def output_size(in_h: int, in_w: int, k_h: int, k_w: int, up, down, pad) -> Tuple[int, int]:
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, pad
    out_h = (in_h * uy + py0 + py1 - k_h + dy) // dy
    out_w = (in_w * ux + px0 + px1 - k_w + dx) // dx
    return out_h, out_w


def upfirdn2d_ref(x: torch.Tensor, kernel: torch.Tensor, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0)) -> torch.Tensor:
    """Pure-PyTorch upfirdn2d. x: [N, C, H, W]; kernel: [kh, kw]. Differentiable to any order."""
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = normalize_args(up, down, pad)
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    # Upsample: insert (up - 1) zeros after every sample.
    if ux > 1 or uy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, ux - 1, 0, 0, 0, uy - 1])
        x = x.reshape(n, c, h * uy, w * ux)
    # Pad (positive) or crop (negative).
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    # FIR filter: a true convolution, hence the flipped kernel (conv2d correlates). Depthwise.
    weight = kernel.to(x.dtype).flip([0, 1])[None, None].expand(c, 1, kh, kw)
    if ux == 1 and uy == 1 and x.dtype == torch.float32:
        # Downsample by striding the filter: only the kept samples are computed (the same sums
        # as filtering everything and keeping every down-th sample). Not for other dtypes, whose
        # strided depthwise backward is several times slower in oneDNN than the full one.
        return F.conv2d(x, weight, groups=c, stride=(dy, dx))
    x = F.conv2d(x, weight, groups=c)
    # Downsample: keep every down-th sample.
    return x[:, :, ::dy, ::dx]


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: IntPair = 1, down: IntPair = 1,
              pad: Sequence[int] = (0, 0), *, impl: Optional[str] = None) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images.

    Args:
        x: [N, C, H, W] float tensor, any range.
        kernel: [kh, kw] FIR filter (applied as a convolution, i.e. flipped).
        up: integer upsampling factor, or (up_x, up_y).
        down: integer downsampling factor, or (down_x, down_y).
        pad: (pad0, pad1) for both axes or (pad_x0, pad_x1, pad_y0, pad_y1); negative crops.
        impl: "auto" | "ref" | "cuda" | "cpu" (the reference); default ``$HAIRLIB_OPS`` or "auto".

    Returns:
        [N, C, out_h, out_w] with out_h = (H*up_y + pad_y0 + pad_y1 - kh + down_y) // down_y.
    """
    if x.ndim != 4 or kernel.ndim != 2:
        raise ValueError(f"upfirdn2d expects x [N, C, H, W] and kernel [kh, kw], got {tuple(x.shape)} and {tuple(kernel.shape)}")
    up, down, pad = normalize_args(up, down, pad)
    oh, ow = output_size(x.shape[2], x.shape[3], kernel.shape[0], kernel.shape[1], up, down, pad)
    if oh < 1 or ow < 1:
        raise ValueError(f"upfirdn2d: empty output ({oh}x{ow}) for input {tuple(x.shape)}, kernel {tuple(kernel.shape)}, up={up}, down={down}, pad={pad}")
    choice = _choose(x, kernel, up, down, pad, impl)
    if choice == "cuda":
        return _cuda().upfirdn2d_cuda(x, kernel, up, down, pad)
    if choice == "cpu":
        return _cpu().upfirdn2d_cpu(x, kernel, up, down, pad, _separable(kernel))
    return upfirdn2d_ref(x, kernel, up, down, pad)


def _cuda():
    return _build._import_cuda_module("upfirdn2d_cuda")


def _cpu():
    return _build._import_cuda_module("upfirdn2d_cpu")


_FACTORS: dict = {}  # kernel values -> (kx, ky) or None


def _separable(kernel: torch.Tensor):
    key = (tuple(kernel.shape), tuple(kernel.detach().flatten().tolist()))
    if key not in _FACTORS:
        _FACTORS[key] = _cpu().separable(kernel)
    return _FACTORS[key]


def _fast_path_tensor(x: torch.Tensor) -> bool:
    """bfloat16, or channels-last (not also contiguous): what the fast training execution makes;
    the reference execution and inference (float32, contiguous) keep the reference."""
    return x.dtype == torch.bfloat16 or (
        x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last))


def _cpu_applies(x, kernel, up, down) -> bool:
    return (_cpu().supports(x) and up[0] == up[1] and down[0] == down[1] and kernel.shape[0] <= 8
            and _separable(kernel) is not None)


def _choose(x, kernel, up, down, pad, impl) -> str:
    impl = _build.requested_impl(impl)
    if impl == "ref":
        return "ref"
    if impl == "cpu":  # our kernel where it applies (channels-last, separable filter), else the reference
        if x.is_cuda:
            raise RuntimeError("upfirdn2d: impl='cpu' needs CPU tensors")
        if _cpu_applies(x, kernel, up, down):
            _cpu().KERNELS.available(required=True)
            return "cpu"
        return "ref"
    if impl == "auto" and x.device.type == "cpu" and _fast_path_tensor(x):
        # the fast training path's tensors: our kernel where it applies
        return "cpu" if _cpu_applies(x, kernel, up, down) and _cpu().KERNELS.available() else "ref"
    if impl == "cuda":
        if not x.is_cuda:
            raise RuntimeError("upfirdn2d: impl='cuda' needs CUDA tensors")
        _cuda().available(required=True)
        return "cuda"
    if not x.is_cuda or x.dtype not in (torch.float32, torch.float16, torch.float64) or not _cuda().available():
        return "ref"
    key = ("upfirdn2d", x.device.index, x.dtype, tuple(x.shape), tuple(kernel.shape), up, down, pad)
    xs, ks = x.detach(), kernel.detach()
    return _build.autotune(key, {
        "cuda": lambda: _cuda().upfirdn2d_cuda(xs, ks, up, down, pad),
        "ref": lambda: upfirdn2d_ref(xs, ks, up, down, pad),
    })
