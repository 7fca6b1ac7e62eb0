"""CUDA backend of ``hairlib.ops.upfirdn2d``: autograd over our kernel (``upfirdn2d_kernel.cu``).

``upfirdn2d_cuda(x, kernel, up, down, pad)`` computes exactly ``upfirdn2d_ref`` on CUDA tensors
and is differentiable to any order with respect to ``x``: the gradient of upfirdn2d is again an
upfirdn2d (its adjoint: flipped kernel, up and down swapped, pads chosen to give x's shape), run
through the same autograd Function, so double backward (R1) works. The kernel gets no gradient.

Nothing is compiled at import; the extension is built on first use by ``hairlib.ops._build``.
"""
from __future__ import annotations

from typing import Tuple

import torch

from . import _build

__all__ = ["available", "upfirdn2d_cuda"]

_EXTENSION = _build.Extension("upfirdn2d", ["upfirdn2d.cpp", "upfirdn2d_kernel.cu"])
available = _EXTENSION.available  # (required=False) -> bool: builds on first call
_ext = _EXTENSION.module  # the compiled module, or RuntimeError saying why not


def _adjoint_pad(in_h: int, in_w: int, out_h: int, out_w: int, kh: int, kw: int, up: Tuple[int, int],
                 down: Tuple[int, int], pad: Tuple[int, int, int, int]) -> Tuple[int, int, int, int]:
    """Pads of the adjoint upfirdn2d (up and down swapped, flipped kernel): [.., out_h, out_w] -> [.., in_h, in_w]."""
    (ux, uy), (dx, dy), (px0, _, py0, _) = up, down, pad
    return (kw - px0 - 1, in_w * ux - out_w * dx + px0 - ux + 1,
            kh - py0 - 1, in_h * uy - out_h * dy + py0 - uy + 1)


class _UpFirDn2d(torch.autograd.Function):
    """out = upfirdn2d(x, kernel, up, down, pad); x: [N, C, H, W], kernel: [kh, kw] (x's dtype and device).

    Backward: grad_x = upfirdn2d(grad_out, flip(kernel), up=down, down=up, pad=adjoint pads), by this
    same Function, hence differentiable again (and the adjoint of the adjoint is the original op).
    The kernel receives no gradient (None).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor, up, down, pad) -> torch.Tensor:
        (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, pad
        out = _ext().upfirdn2d(x.contiguous(), kernel, ux, uy, dx, dy, px0, px1, py0, py1)  # [N, C, oh, ow]
        ctx.save_for_backward(kernel)
        ctx.geometry = (x.shape[2], x.shape[3], out.shape[2], out.shape[3], up, down, pad)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        (kernel,) = ctx.saved_tensors
        in_h, in_w, out_h, out_w, up, down, pad = ctx.geometry
        kh, kw = kernel.shape
        g_pad = _adjoint_pad(in_h, in_w, out_h, out_w, kh, kw, up, down, pad)
        grad_x = _UpFirDn2d.apply(grad_out.contiguous(), kernel.flip([0, 1]).contiguous(), down, up, g_pad)
        return grad_x, None, None, None, None


def upfirdn2d_cuda(x: torch.Tensor, kernel: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int],
                   pad: Tuple[int, int, int, int]) -> torch.Tensor:
    """upfirdn2d on CUDA. Arguments already normalised by ``hairlib.ops.upfirdn2d.normalize_args``.

    Args:
        x: [N, C, H, W] CUDA tensor, float32 / float64 / float16 (made contiguous if needed).
        kernel: [kh, kw]; converted to x's dtype and device, as the reference does.
        up: (up_x, up_y); down: (down_x, down_y); pad: (pad_x0, pad_x1, pad_y0, pad_y1).

    Returns:
        [N, C, out_h, out_w], equal to ``upfirdn2d_ref(x, kernel, up, down, pad)``. Gradients flow to
        ``x`` to any order; the kernel gets none (it is a fixed filter in StyleGAN2).
    """
    if not x.is_cuda:
        raise RuntimeError(f"upfirdn2d_cuda needs a CUDA tensor, got one on {x.device}")
    k = kernel.detach().to(device=x.device, dtype=x.dtype).contiguous()
    return _UpFirDn2d.apply(x, k, tuple(up), tuple(down), tuple(pad))
