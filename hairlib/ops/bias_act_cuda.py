"""CUDA backend of ``ops.fused_leaky_relu``: autograd over our kernel (``bias_act_kernel.cu``).

    y = leaky_relu(x + b, slope) * scale            x: [N, C, ...], b: [C] or None

Gradients, with mask = (x + b > 0 ? 1 : slope) recomputed from the saved x and b (exactly the
reference's branch, including x + b == 0 -> slope):

    grad_x = grad_y * scale * mask                  grad_b = grad_x summed over all dims but 1

grad_x is linear in grad_y for a fixed mask and the mask is piecewise constant in x and b, so the
backward is itself an autograd Function (``_LeakyReLUGrad``) whose backward is the same Function
again: differentiable to any order (double backward for R1 / path-length regularisation). The
derivatives of the gradient with respect to x and b are zero almost everywhere, as the
reference's.

Nothing is compiled at import; the extension is built on first use by ``hairlib.ops._build``.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _build

__all__ = ["available", "fused_leaky_relu_cuda"]

_EXTENSION = _build.Extension("bias_act", ["bias_act.cpp", "bias_act_kernel.cu"])
available = _EXTENSION.available  # (required=False) -> bool: builds on first call
_ext = _EXTENSION.module  # the compiled module, or RuntimeError saying why not


def _or_empty(t: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """The extension's convention for an absent bias: an empty tensor."""
    return like.new_empty(0) if t is None else t.contiguous()


def _reduce_dims(x: torch.Tensor):
    return [0] + list(range(2, x.ndim))  # all but the channel dim 1


class _LeakyReLUGrad(torch.autograd.Function):
    """g_x = (g + g_b[c]) * scale * mask(x + b); also returns g_x summed over all dims but 1 when ``reduce``.

    g: shaped like x; g_b: [C] or None (the extra term of the double backward); x, b: the forward's
    input and bias (b may be None). Its own adjoint: for incoming gradients (h, h_sum) of
    (g_x, sum g_x) the gradients of (g, g_b) are this Function applied to (h, h_sum), since the
    mask is diagonal and the sum is the adjoint of the channel broadcast.
    """

    @staticmethod
    def forward(ctx, g, g_b, x, b, slope: float, scale: float, reduce: bool):
        g_x = _ext().fused_bias_act_grad(g.contiguous(), _or_empty(g_b, x), x, _or_empty(b, x), slope, scale)
        ctx.save_for_backward(x, b)
        ctx.slope, ctx.scale, ctx.reduce = slope, scale, reduce
        if reduce:
            return g_x, g_x.sum(_reduce_dims(g_x))
        return g_x

    @staticmethod
    def backward(ctx, h, h_sum=None):
        x, b = ctx.saved_tensors
        need_g, need_gb = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_g or need_gb):
            return None, None, None, None, None, None, None
        res = _LeakyReLUGrad.apply(h, h_sum if ctx.reduce else None, x, b, ctx.slope, ctx.scale, need_gb)
        grad_g, grad_gb = res if need_gb else (res, None)
        return (grad_g if need_g else None), grad_gb, None, None, None, None, None


class _FusedLeakyReLU(torch.autograd.Function):
    """y = leaky_relu(x + b[c], slope) * scale; x: [N, C, ...] contiguous, b: [C] (x's dtype) or None."""

    @staticmethod
    def forward(ctx, x, b, slope: float, scale: float):
        y = _ext().fused_bias_act(x, _or_empty(b, x), slope, scale)
        ctx.save_for_backward(x, b)
        ctx.slope, ctx.scale = slope, scale
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, b = ctx.saved_tensors
        need_x, need_b = ctx.needs_input_grad[0], b is not None and ctx.needs_input_grad[1]
        if not (need_x or need_b):
            return None, None, None, None
        res = _LeakyReLUGrad.apply(grad_y, None, x, b, ctx.slope, ctx.scale, need_b)
        grad_x, grad_b = res if need_b else (res, None)
        return (grad_x if need_x else None), grad_b, None, None


def fused_leaky_relu_cuda(x: torch.Tensor, bias: Optional[torch.Tensor], negative_slope: float,
                          scale: float) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale`` on CUDA; equals ``fused_leaky_relu_ref``.

    Args:
        x: [N, C, ...] CUDA tensor, float32 / float64 / float16 (made contiguous if needed).
        bias: [C] or None; converted to x's dtype (as the reference does; its gradient flows back
            through the conversion).
        negative_slope, scale: floats.

    Returns: tensor shaped like x, differentiable to any order in x and bias.
    """
    if not x.is_cuda:
        raise RuntimeError(f"fused_leaky_relu_cuda needs a CUDA tensor, got one on {x.device}")
    if bias is not None:
        if x.ndim < 2 or bias.ndim != 1 or bias.shape[0] != x.shape[1]:
            raise ValueError(f"fused_leaky_relu_cuda: bias {tuple(bias.shape)} must be [C] for x {tuple(x.shape)}")
        bias = bias.to(device=x.device, dtype=x.dtype).contiguous()
    return _FusedLeakyReLU.apply(x.contiguous(), bias, float(negative_slope), float(scale))
