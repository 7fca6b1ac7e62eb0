"""CPU backend of ``ops.styled_bias_act`` and ``ops.modulate``: autograd over our C++ kernels
(``styled_act_cpu.cpp``, built into ``cpu.KERNELS``).

    styled:   y = leaky_relu(x * d[n, c] + w * noise[n, h, w] + b[c], slope) * gain [+ residual]
    modulate: y = x * s[n, c]

Each kernel makes one pass over the activations, forward and backward (PyTorch's eager ops
make five to ten for the same expressions), in float32 arithmetic on float32 or bfloat16
tensors, contiguous or channels-last (kept). The backward of ``styled`` recomputes the
pre-activation from the saved input (the forward's arithmetic exactly), so neither it nor the
output is stored.

Double backward (R1, path-length regularisation): when a gradient is asked for with
``create_graph=True``, the backward differentiates the pure-PyTorch reference on the saved
inputs instead, so these Functions are differentiable to any order with the reference's
derivatives.

Nothing is compiled at import; the extension is built on first use by ``hairlib.ops._build``.
"""
from __future__ import annotations

from typing import Optional

import torch

from .cpu import KERNELS

__all__ = ["available", "styled_bias_act_cpu", "modulate_cpu", "supports"]


def available(required: bool = False) -> bool:
    """Whether the kernels are built (building them on the first call)."""
    return KERNELS.available(required)


def _ext():
    return KERNELS.module()  # the compiled module, or RuntimeError saying why not


_DTYPES = (torch.float32, torch.bfloat16)


def supports(x: torch.Tensor) -> bool:
    """Whether the CPU kernels take ``x``: a 4-D float32/bfloat16 CPU tensor, contiguous or
    channels-last."""
    return (x.device.type == "cpu" and x.ndim == 4 and x.dtype in _DTYPES
            and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)))


def _f32(t: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """The kernels' convention: contiguous float32, or an empty tensor for "absent"."""
    if t is None:
        return like.new_empty(0, dtype=torch.float32)
    return t.detach().to(torch.float32).contiguous()


def _or_empty(t: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """An operand in x's dtype and layout (converted by the kernel if need be), or empty."""
    return like.new_empty(0) if t is None else t.detach()


def _sum_to(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(like.dtype).reshape(like.shape)


class _StyledAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dcoef, noise, noise_weight, bias, residual, slope: float, gain: float):
        nw = float(noise_weight) if noise is not None else 0.0
        out = _ext().styled_act_forward(x, _f32(dcoef, x), _f32(noise, x), nw, _f32(bias, x),
                                        _or_empty(residual, x), slope, gain)
        ctx.save_for_backward(x, dcoef, noise, noise_weight, bias)
        ctx.nw, ctx.slope, ctx.gain, ctx.has_residual = nw, slope, gain, residual is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        x, dcoef, noise, noise_weight, bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_res = grad if ctx.has_residual and need[5] else None
        if torch.is_grad_enabled():  # create_graph: differentiate the reference (any order)
            from .styled import styled_bias_act_ref

            inputs = [(i, t) for i, t in ((0, x), (1, dcoef), (3, noise_weight), (4, bias))
                      if t is not None and need[i]]
            y = styled_bias_act_ref(x, bias, dcoef, noise, noise_weight, ctx.slope, ctx.gain)
            grads = torch.autograd.grad(y, [t for _, t in inputs], grad, create_graph=True) if inputs else ()
            res = [None] * 8
            for (i, _), g in zip(inputs, grads):
                res[i] = g
            res[5] = grad_res
            return tuple(res)
        want_d = dcoef is not None and need[1]
        grad_x, grad_d, grad_b, grad_nw = _ext().styled_act_backward(
            grad, x, _f32(dcoef, x), _f32(noise, x), ctx.nw, _f32(bias, x), ctx.slope, ctx.gain, want_d)
        return (grad_x if need[0] else None,
                _sum_to(grad_d, dcoef) if want_d else None,
                None,
                _sum_to(grad_nw.sum(), noise_weight) if noise is not None and need[3] else None,
                _sum_to(grad_b.sum(0), bias) if bias is not None and need[4] else None,
                grad_res, None, None)


class _Modulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s):
        ctx.save_for_backward(x, s)
        return _ext().channel_scale_forward(x, _f32(s, x))

    @staticmethod
    def backward(ctx, grad):
        x, s = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiate the reference (any order)
            inputs = [t for t, n in ((x, ctx.needs_input_grad[0]), (s, ctx.needs_input_grad[1])) if n]
            y = x * s.to(x.dtype)[:, :, None, None]
            grads = iter(torch.autograd.grad(y, inputs, grad, create_graph=True))
            return tuple(next(grads) if n else None for n in ctx.needs_input_grad)
        grad_x, grad_s = _ext().channel_scale_backward(grad, x, _f32(s, x))
        return grad_x if ctx.needs_input_grad[0] else None, _sum_to(grad_s, s) if ctx.needs_input_grad[1] else None


def styled_bias_act_cpu(x: torch.Tensor, bias: Optional[torch.Tensor], dcoef: Optional[torch.Tensor],
                        noise: Optional[torch.Tensor], noise_weight: Optional[torch.Tensor],
                        negative_slope: float, scale: float, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``styled_bias_act`` on CPU; arguments as there (x must satisfy ``supports``; scale > 0)."""
    if not supports(x):
        raise RuntimeError(f"styled_bias_act_cpu: x must be a 4-D float32/bfloat16 CPU tensor, contiguous or "
                           f"channels-last; got {x.dtype} {tuple(x.shape)} on {x.device}")
    if scale <= 0:
        raise ValueError(f"styled_bias_act_cpu: scale must be > 0, got {scale}")
    if noise is not None:
        n, _, h, w = x.shape
        if noise.ndim != 4 or noise.shape[1] != 1 or tuple(noise.shape[2:]) != (h, w) or noise.shape[0] not in (1, n):
            raise ValueError(f"styled_bias_act_cpu: noise {tuple(noise.shape)} must be [N or 1, 1, H, W] "
                             f"for x {tuple(x.shape)}")
        if noise_weight is None or noise_weight.numel() != 1:
            raise ValueError("styled_bias_act_cpu: noise needs a one-element noise_weight")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"styled_bias_act_cpu: residual {tuple(residual.shape)} must be shaped like x "
                         f"{tuple(x.shape)}")
    return _StyledAct.apply(x, dcoef, noise, noise_weight, bias, residual, float(negative_slope), float(scale))


def modulate_cpu(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``modulate`` on CPU: x [N, C, H, W] (``supports``) times s [N, C]."""
    if not supports(x):
        raise RuntimeError(f"modulate_cpu: x must be a 4-D float32/bfloat16 CPU tensor, contiguous or channels-last; "
                           f"got {x.dtype} {tuple(x.shape)} on {x.device}")
    return _Modulate.apply(x, s)
