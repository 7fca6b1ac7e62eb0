"""StyleGAN2's activation, ``leaky_relu(x + b, 0.2) * sqrt(2)``: its constants and reference,
shared by ``bias_act`` and ``styled``."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["DEFAULT_SLOPE", "DEFAULT_SCALE", "fused_leaky_relu_ref"]

DEFAULT_SLOPE = 0.2
DEFAULT_SCALE = math.sqrt(2)


def fused_leaky_relu_ref(x: torch.Tensor, bias: Optional[torch.Tensor] = None,
                         negative_slope: float = DEFAULT_SLOPE, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """Pure-PyTorch reference; differentiable to any order."""
    if bias is not None:
        x = x + bias.to(x.dtype).view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale
