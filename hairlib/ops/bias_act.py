"""Fused bias + leaky-ReLU + gain: ``y = leaky_relu(x + b, slope) * scale``.

StyleGAN2's activation (slope 0.2, scale sqrt(2)); the bias is broadcast over dimension 1.
Same semantics as rosinality's ``fused_leaky_relu``, except that the negative slope argument
is honoured on every device (rosinality's CPU path silently used 0.2).

Backends (see ``hairlib.ops._build``): a pure-PyTorch reference (any device, double backward) and our
CUDA kernel (``bias_act_kernel.cu``), chosen by ``impl=`` or ``$HAIRLIB_OPS``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import _build

__all__ = ["fused_leaky_relu", "fused_leaky_relu_ref", "FusedLeakyReLU", "DEFAULT_SLOPE", "DEFAULT_SCALE"]

DEFAULT_SLOPE = 0.2
DEFAULT_SCALE = math.sqrt(2)


def _check(x: torch.Tensor, bias: Optional[torch.Tensor]):
    if bias is not None:
        if x.ndim < 2 or bias.ndim != 1 or bias.shape[0] != x.shape[1]:
            raise ValueError(f"fused_leaky_relu: bias {tuple(bias.shape)} must be [C] for x {tuple(x.shape)} (C = dim 1)")


def fused_leaky_relu_ref(x: torch.Tensor, bias: Optional[torch.Tensor] = None,
                         negative_slope: float = DEFAULT_SLOPE, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """Pure-PyTorch reference; differentiable to any order."""
    if bias is not None:
        x = x + bias.to(x.dtype).view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


def fused_leaky_relu(x: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     negative_slope: float = DEFAULT_SLOPE, scale: float = DEFAULT_SCALE,
                     *, impl: Optional[str] = None) -> torch.Tensor:
    """Bias, leaky ReLU and gain in one pass.

    Args:
        x: [N, C, ...] float tensor.
        bias: [C] or None.
        negative_slope: slope for x + b < 0.
        scale: gain applied after the activation.
        impl: "auto" | "ref" | "cuda"; default ``$HAIRLIB_OPS`` or "auto".

    Returns: tensor shaped like x.
    """
    _check(x, bias)
    impl = _build.requested_impl(impl)
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
