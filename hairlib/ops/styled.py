"""The elementwise work around a StyleGAN2 convolution run without its style (StyleGAN2-ADA's
``fused_modconv=False``): the modulation of its input and the epilogue of its output.

    modulate(x, s)            = x * s[n, c]
    styled_bias_act(x, b, d, noise, w, residual=r)
                              = leaky_relu(x * d[n, c] + w * noise[n, h, w] + b[c], 0.2) * sqrt(2) + r

(d: demodulation coefficients; noise: per-pixel noise of strength w.) With d and noise absent,
``styled_bias_act`` is ``fused_leaky_relu`` on a 4-D tensor.

Backends (see ``hairlib.ops._build``): a pure-PyTorch reference (any device, any dtype,
differentiable to any order) and our CPU kernels (``styled_act_cpu.cpp``: one pass over memory
forward and backward, float32 arithmetic, float32 or bfloat16 tensors, contiguous or
channels-last; double backward differentiates the reference). "auto" takes the CPU kernels for
bfloat16 or channels-last CPU tensors, i.e. on the fast training path, where the elementwise
passes would otherwise cost as much as the convolutions; float32 contiguous tensors (the
reference execution, inference) keep the reference: no build, the reference's results.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _build
from ._leaky import DEFAULT_SCALE, DEFAULT_SLOPE, fused_leaky_relu_ref
from .upfirdn2d import _fast_path_tensor

__all__ = ["styled_bias_act", "styled_bias_act_ref", "modulate", "modulate_ref"]


def styled_bias_act_ref(x: torch.Tensor, bias: Optional[torch.Tensor], dcoef: Optional[torch.Tensor] = None,
                        noise: Optional[torch.Tensor] = None, noise_weight: Optional[torch.Tensor] = None,
                        negative_slope: float = DEFAULT_SLOPE, scale: float = DEFAULT_SCALE,
                        residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pure-PyTorch reference of ``styled_bias_act``; differentiable to any order. Every small
    operand is cast to x's dtype, so bf16 activations stay bf16."""
    dt = x.dtype
    if dcoef is not None:
        x = x * dcoef.to(dt)[:, :, None, None]
    if noise is not None:
        x = x + noise_weight.to(dt) * noise.to(dt)
    y = fused_leaky_relu_ref(x, bias, negative_slope, scale)
    return y if residual is None else y + residual.to(dt)


def modulate_ref(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch reference of ``modulate``; differentiable to any order."""
    return x * s.to(x.dtype)[:, :, None, None]


def _check(x: torch.Tensor, per_sample: Optional[torch.Tensor], what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what}: x must be [N, C, H, W], got {tuple(x.shape)}")
    if per_sample is not None and tuple(per_sample.shape) != tuple(x.shape[:2]):
        raise ValueError(f"{what}: per-sample coefficients {tuple(per_sample.shape)} must be [N, C] = "
                         f"{tuple(x.shape[:2])}")


def _use_cpu_kernel(x: torch.Tensor, impl: Optional[str], what: str) -> bool:
    impl = _build.requested_impl(impl)
    if impl == "cpu":
        if x.device.type != "cpu":
            raise RuntimeError(f"{what}: impl='cpu' needs CPU tensors, got one on {x.device}")
        _cpu().available(required=True)
        return _cpu().supports(x)
    if impl == "cuda" and x.device.type != "cuda":
        raise RuntimeError(f"{what}: impl='cuda' needs CUDA tensors (this op has no CUDA kernel: the reference runs)")
    return impl == "auto" and _fast_path_tensor(x) and _cpu().supports(x) and _cpu().available()


def styled_bias_act(x: torch.Tensor, bias: Optional[torch.Tensor], dcoef: Optional[torch.Tensor] = None,
                    noise: Optional[torch.Tensor] = None, noise_weight: Optional[torch.Tensor] = None,
                    negative_slope: float = DEFAULT_SLOPE, scale: float = DEFAULT_SCALE, *,
                    residual: Optional[torch.Tensor] = None, impl: Optional[str] = None) -> torch.Tensor:
    """Demodulation, noise, bias, leaky ReLU, gain (and a residual sum) in one pass.

    Args:
        x: [N, C, H, W] convolution output, any float dtype and memory format (both kept).
        bias: [C] or None.
        dcoef: [N, C] demodulation coefficients (any float dtype), or None.
        noise: [N or 1, 1, H, W] per-pixel noise, or None.
        noise_weight: [1] noise strength (required with ``noise``).
        negative_slope: slope below zero; scale: gain after the activation (> 0 for the CPU kernel).
        residual: shaped like x, added after the activation (a residual block's sum), or None.
        impl: "auto" | "ref" | "cpu" (| "cuda": not available, an error); default ``$HAIRLIB_OPS``
            or "auto".

    Returns: ``leaky_relu(x * dcoef + noise_weight * noise + bias, negative_slope) * scale
    [+ residual]``, shaped like x, in x's dtype.
    """
    _check(x, dcoef, "styled_bias_act")
    if noise is not None and noise_weight is None:
        raise ValueError("styled_bias_act: noise needs noise_weight")
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != x.shape[1]):
        raise ValueError(f"styled_bias_act: bias {tuple(bias.shape)} must be [C] for x {tuple(x.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"styled_bias_act: residual {tuple(residual.shape)} must be shaped like x {tuple(x.shape)}")
    if scale > 0 and _use_cpu_kernel(x, impl, "styled_bias_act"):
        return _cpu().styled_bias_act_cpu(x, bias, dcoef, noise, noise_weight, negative_slope, scale, residual)
    return styled_bias_act_ref(x, bias, dcoef, noise, noise_weight, negative_slope, scale, residual)


def modulate(x: torch.Tensor, s: torch.Tensor, *, impl: Optional[str] = None) -> torch.Tensor:
    """x [N, C, H, W] (any float dtype and memory format, both kept) times s [N, C] per sample
    and channel: the input modulation of a convolution run without its style. ``impl`` as in
    ``styled_bias_act`` (the CPU kernel serves the backward: both gradients in one pass)."""
    _check(x, s, "modulate")
    if _use_cpu_kernel(x, impl, "modulate"):
        return _cpu().modulate_cpu(x, s)
    return modulate_ref(x, s)


def _cpu():
    return _build._import_cuda_module("styled_act_cpu")
