"""StyleCLIP's latent mapper (Patashnik et al. 2021, section 5), in the authors' key layout.

``LevelsMapper`` holds up to three sub-mappers over the rows of W+: coarse (rows 0-3), medium
(4-7) and fine (8 on). Each is PixelNorm then 4 EqualLinear(D, D, lr_mul 0.01) with fused
leaky-ReLU, as ``mapper/latent_mappers.py``; the edit is ``w + 0.1 * M(w)``. An absent
sub-mapper contributes zeros (hair and expression mappers are trained without the fine one).

Keys: ``course_mapping.mapping.{1..4}.{weight,bias}`` (sic, "course"), ``medium_mapping...``,
``fine_mapping...``; the authors' checkpoints prefix them with ``mapper.`` inside
``ckpt["state_dict"]`` beside the generator's ``decoder.*``.

Two details follow the authors' code exactly: PixelNorm normalises over dim 1 of the
[N, rows, D] slice (across the rows of a group, not across D), and the bias of each layer is
added along the last dimension (StyleCLIP's ``fused_leaky_relu`` for 3-D inputs).
"""
from __future__ import annotations

import math
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SubMapper", "LevelsMapper", "GROUPS", "group_slices"]

GROUPS = ("coarse", "medium", "fine")
_ATTR = {"coarse": "course_mapping", "medium": "medium_mapping", "fine": "fine_mapping"}


def group_slices(num_ws: int) -> Dict[str, slice]:
    """W+ rows of each group: coarse 0-3, medium 4-7, fine 8 on (18 rows at 1024 px, 10 at 64 px)."""
    return {"coarse": slice(0, min(4, num_ws)), "medium": slice(min(4, num_ws), min(8, num_ws)),
            "fine": slice(min(8, num_ws), num_ws)}


class _EqualLinearRows(nn.Module):
    """EqualLinear (rosinality keys ``weight``, ``bias``) with bias + leaky-ReLU * sqrt(2) on the last dim."""

    def __init__(self, dim: int, lr_mul: float = 0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.scale = lr_mul / math.sqrt(dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(F.linear(x, self.weight * self.scale) + self.bias * self.lr_mul, 0.2) * math.sqrt(2)


class _PixelNormDim1(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class SubMapper(nn.Module):
    """PixelNorm + 4 equalised linear layers (key ``mapping.0`` is the parameter-free norm)."""

    def __init__(self, dim: int = 512, n_layers: int = 4, lr_mul: float = 0.01):
        super().__init__()
        self.mapping = nn.Sequential(_PixelNormDim1(), *[_EqualLinearRows(dim, lr_mul) for _ in range(n_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mapping(x)


class LevelsMapper(nn.Module):
    """W+ [N, num_ws, D] -> offsets [N, num_ws, D] (apply as ``w + 0.1 * offsets``)."""

    def __init__(self, num_ws: int = 18, dim: int = 512, groups: Sequence[str] = ("coarse", "medium", "fine")):
        super().__init__()
        bad = set(groups) - set(GROUPS)
        if bad or not groups:
            raise ValueError(f"groups must be a non-empty subset of {GROUPS}, got {list(groups)}")
        self.num_ws, self.dim, self.groups = num_ws, dim, tuple(g for g in GROUPS if g in groups)
        for g in self.groups:
            setattr(self, _ATTR[g], SubMapper(dim))

    def forward(self, wplus: torch.Tensor) -> torch.Tensor:
        parts = []
        for g, sl in group_slices(self.num_ws).items():
            x = wplus[:, sl]
            parts.append(getattr(self, _ATTR[g])(x) if g in self.groups else torch.zeros_like(x))
        return torch.cat(parts, dim=1)

    def edit(self, wplus: torch.Tensor, strength: float = 0.1) -> torch.Tensor:
        return wplus + strength * self(wplus)

    @staticmethod
    def groups_in(state_dict: Dict[str, torch.Tensor]):
        """Which sub-mappers a state dict holds."""
        return tuple(g for g in GROUPS if any(k.startswith(_ATTR[g] + ".") for k in state_dict))
