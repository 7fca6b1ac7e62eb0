"""Fused bias + leaky-ReLU + gain: ``y = leaky_relu(x + b, slope) * scale``.

StyleGAN2's activation (slope 0.2, scale sqrt(2)); the bias is broadcast over dimension 1.
Same semantics as rosinality's ``fused_leaky_relu``, except that the negative slope argument
is honoured on every device (rosinality's CPU path silently used 0.2).

Backends (see ``hairlib.ops._build``): a pure-PyTorch reference (any device, double backward), our
CUDA kernel (``bias_act_kernel.cu``) and, for 4-D CPU tensors, the CPU kernel of
``styled_bias_act`` (``styled_act_cpu.cpp``), chosen by ``impl=`` or ``$HAIRLIB_OPS``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from . import _build
from ._leaky import DEFAULT_SCALE, DEFAULT_SLOPE, fused_leaky_relu_ref
from .styled import styled_bias_act

__all__ = ["fused_leaky_relu", "fused_leaky_relu_ref", "FusedLeakyReLU", "DEFAULT_SLOPE", "DEFAULT_SCALE"]

def _check(x: torch.Tensor, bias: Optional[torch.Tensor]):
    if bias is not None:
        if x.ndim < 2 or bias.ndim != 1 or bias.shape[0] != x.shape[1]:
            raise ValueError(f"fused_leaky_relu: bias {tuple(bias.shape)} must be [C] for x {tuple(x.shape)} (C = dim 1)")



def fused_leaky_relu(x: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     negative_slope: float = DEFAULT_SLOPE, scale: float = DEFAULT_SCALE,
                     *, impl: Optional[str] = None) -> torch.Tensor:
    """Bias, leaky ReLU and gain in one pass.

    Args:
        x: [N, C, ...] float tensor.
        bias: [C] or None.
        negative_slope: slope for x + b < 0.
        scale: gain applied after the activation.
        impl: "auto" | "ref" | "cuda" | "cpu"; default ``$HAIRLIB_OPS`` or "auto". On a 4-D CPU
            tensor, "cpu" (and "auto" for bfloat16 or channels-last) runs ``styled_bias_act``'s CPU kernel.

    Returns: tensor shaped like x.
    """
    _check(x, bias)
    impl = _build.requested_impl(impl)
    if not x.is_cuda and x.ndim == 4 and impl in ("auto", "cpu"):
        # CPU: our one-pass kernel, shared with styled_bias_act (under "auto": bf16 or channels-last)
        return styled_bias_act(x, bias, negative_slope=negative_slope, scale=scale, impl=impl)
    if impl == "cpu":
        raise RuntimeError("fused_leaky_relu: impl='cpu' needs a 4-D CPU tensor")
    if impl == "cuda":
        if not x.is_cuda:
            raise RuntimeError("fused_leaky_relu: impl='cuda' needs CUDA tensors")
        _cuda().available(required=True)
        return _cuda().fused_leaky_relu_cuda(x, bias, negative_slope, scale)
    if impl == "auto" and x.is_cuda and x.dtype in (torch.float32, torch.float16, torch.float64) and _cuda().available():
        key = ("bias_act", x.device.index, x.dtype, tuple(x.shape), bias is not None)
        xs, bs = x.detach(), None if bias is None else bias.detach()
        choice = _build.autotune(key, {
            "cuda": lambda: _cuda().fused_leaky_relu_cuda(xs, bs, negative_slope, scale),
            "ref": lambda: fused_leaky_relu_ref(xs, bs, negative_slope, scale),
        })
        if choice == "cuda":
            return _cuda().fused_leaky_relu_cuda(x, bias, negative_slope, scale)
    return fused_leaky_relu_ref(x, bias, negative_slope, scale)


def _cuda():
    return _build._import_cuda_module("bias_act_cuda")


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias followed by the fused activation (rosinality's key: ``bias``)."""

    def __init__(self, channels: int, bias: bool = True, negative_slope: float = DEFAULT_SLOPE,
                 scale: float = DEFAULT_SCALE):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None  # [C]
        self.negative_slope = negative_slope  # slope below zero
        self.scale = scale  # output gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)
