"""CPU backend of ``ops.upfirdn2d`` for channels-last tensors and separable filters: autograd
over our C++ kernel (``upfirdn2d_cpu.cpp``, built into ``cpu.KERNELS``).

The kernel filters each output row in two passes (the contributing input rows into a float32
row buffer, then along W), reading the input once, with the padding implicit and only the kept
samples computed; PyTorch's reference pads (a copy), runs a depthwise convolution and, for its
backward, a depthwise convolution backward, on the whole padded tensor.

Gradient: the adjoint of upfirdn2d(up, down, pad, k) is upfirdn2d(up=down, down=up, pad',
unflipped k) (as in NVlabs' upfirdn2d), which is the same kernel again. Double backward
(R1): with ``create_graph=True`` the backward differentiates the pure-PyTorch reference on the
saved input instead, so the op is differentiable to any order.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .cpu import KERNELS

__all__ = ["separable", "upfirdn2d_cpu", "supports"]

_DTYPES = (torch.float32, torch.bfloat16)


def supports(x: torch.Tensor) -> bool:
    """Whether the kernel takes ``x``: a 4-D float32/bfloat16 channels-last CPU tensor."""
    return (x.device.type == "cpu" and x.ndim == 4 and x.dtype in _DTYPES and x.shape[1] > 1
            and x.is_contiguous(memory_format=torch.channels_last))


def separable(kernel: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(kx [kw], ky [kh]) with kernel == ky[:, None] * kx[None, :] (to float32 rounding), or None
    if ``kernel`` [kh, kw] is not of rank one (or has zero sum)."""
    k = kernel.detach().to(torch.float32, copy=False).cpu()
    total = k.sum()
    if k.ndim != 2 or total == 0:
        return None
    ky, kx = k.sum(1), k.sum(0) / total
    if not torch.allclose(ky[:, None] * kx[None, :], k, rtol=1e-6, atol=1e-7 * k.abs().max().item()):
        return None
    return kx.contiguous(), ky.contiguous()


class _FIR(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, kx, ky, up: int, down: int, pad: Tuple[int, int, int, int], flip: bool):
        px0, px1, py0, py1 = pad
        out = KERNELS.module().fir_channels_last(x, kx, ky, up, down, px0, px1, py0, py1, flip)
        ctx.save_for_backward(x, kernel)
        ctx.kx, ctx.ky, ctx.up, ctx.down, ctx.pad, ctx.flip = kx, ky, up, down, pad, flip
        ctx.in_hw, ctx.out_hw = tuple(x.shape[2:]), tuple(out.shape[2:])
        return out

    @staticmethod
    def backward(ctx, grad):
        x, kernel = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return (None,) * 8
        if torch.is_grad_enabled():  # create_graph: differentiate the reference (any order)
            from .upfirdn2d import upfirdn2d_ref

            assert ctx.flip, "double backward of the adjoint FIR is not needed by upfirdn2d"
            y = upfirdn2d_ref(x, kernel, ctx.up, ctx.down, ctx.pad)
            (gx,) = torch.autograd.grad(y, x, grad, create_graph=True)
            return (gx,) + (None,) * 7
        (ih, iw), (oh, ow) = ctx.in_hw, ctx.out_hw
        px0, _, py0, _ = ctx.pad
        kw, kh = ctx.kx.numel(), ctx.ky.numel()
        up, down = ctx.up, ctx.down
        pad = (kw - px0 - 1, iw * up - ow * down + px0 - up + 1, kh - py0 - 1, ih * up - oh * down + py0 - up + 1)
        grad = grad.contiguous(memory_format=torch.channels_last)
        if grad.dtype != x.dtype:
            grad = grad.to(x.dtype)
        gx = KERNELS.module().fir_channels_last(grad, ctx.kx, ctx.ky, down, up, *pad, not ctx.flip)
        return (gx,) + (None,) * 7


def upfirdn2d_cpu(x: torch.Tensor, kernel: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int],
                  pad: Tuple[int, int, int, int],
                  factors: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
    """``upfirdn2d`` on CPU for x [N, C, H, W] channels-last (``supports``) and a separable
    kernel (``separable``), the same factor along both axes. Arguments normalised as by
    ``upfirdn2d.normalize_args``; ``factors``: (kx, ky) if already known."""
    if not supports(x):
        raise RuntimeError(f"upfirdn2d_cpu: x must be a 4-D float32/bfloat16 channels-last CPU tensor; "
                           f"got {x.dtype} {tuple(x.shape)} on {x.device}")
    if up[0] != up[1] or down[0] != down[1]:
        raise ValueError(f"upfirdn2d_cpu: the same factors along both axes only, got up={up}, down={down}")
    factors = factors or separable(kernel)
    if factors is None:
        raise ValueError("upfirdn2d_cpu: the kernel is not separable")
    kx, ky = factors
    return _FIR.apply(x, kernel, kx, ky, int(up[0]), int(down[0]), tuple(int(p) for p in pad), True)
