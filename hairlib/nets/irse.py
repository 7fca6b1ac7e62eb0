"""IR-SE residual blocks shared by the ArcFace backbone and the e4e encoder.

Attribute names follow TreB1eN's InsightFace_Pytorch as used by pSp/e4e
(``models/encoders/helpers.py`` in omertov/encoder4editing), so that the authors' state
dicts load unchanged: a unit has ``shortcut_layer`` (empty max-pool or ``0`` conv + ``1`` BN)
and ``res_layer`` (``0`` BN, ``1`` conv, ``2`` PReLU, ``3`` conv, ``4`` BN[, ``5`` SE with
``fc1``/``fc2``]).
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from hairlib.nets.loading import fill_num_batches_tracked  # noqa: F401  (re-exported)

__all__ = ["Flatten", "l2_norm", "SEModule", "BottleneckIR", "BottleneckIRSE", "BlockSpec",
           "get_blocks", "make_input_layer", "make_body", "upsample_add", "fill_num_batches_tracked"]


class Flatten(nn.Module):
    """[N, ...] -> [N, prod(...)] (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


def l2_norm(x: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """Divide by the L2 norm along ``axis``."""
    return x / torch.norm(x, 2, axis, keepdim=True)


class SEModule(nn.Module):
    """Squeeze-and-excitation: global pool -> 1x1 conv (c/r) -> ReLU -> 1x1 conv (c) -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


def _shortcut(in_channel: int, depth: int, stride: int) -> nn.Module:
    if in_channel == depth:
        return nn.MaxPool2d(1, stride)  # identity, subsampled by the stride
    return nn.Sequential(nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth))


class BottleneckIR(nn.Module):
    """Improved residual unit: BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN, plus shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        self.shortcut_layer = _shortcut(in_channel, depth, stride)
        self.res_layer = nn.Sequential(*self._res_layers(in_channel, depth, stride))

    @staticmethod
    def _res_layers(in_channel: int, depth: int, stride: int) -> List[nn.Module]:
        return [nn.BatchNorm2d(in_channel),
                nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
                nn.PReLU(depth),
                nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
                nn.BatchNorm2d(depth)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class BottleneckIRSE(BottleneckIR):
    """IR unit with a squeeze-and-excitation gate (reduction 16) at the end of the residual path."""

    @staticmethod
    def _res_layers(in_channel: int, depth: int, stride: int) -> List[nn.Module]:
        return BottleneckIR._res_layers(in_channel, depth, stride) + [SEModule(depth, 16)]


class BlockSpec(NamedTuple):
    in_channel: int
    depth: int
    stride: int


_UNITS: Dict[int, List[int]] = {50: [3, 4, 14, 3], 100: [3, 13, 30, 3], 152: [3, 8, 36, 3]}


def get_blocks(num_layers: int) -> List[List[BlockSpec]]:
    """Four stages (64, 128, 256, 512 channels); the first unit of each stage has stride 2."""
    if num_layers not in _UNITS:
        raise ValueError(f"num_layers must be one of {sorted(_UNITS)}, got {num_layers}")
    stages = []
    in_ch = 64
    for depth, n in zip((64, 128, 256, 512), _UNITS[num_layers]):
        stages.append([BlockSpec(in_ch, depth, 2)] + [BlockSpec(depth, depth, 1) for _ in range(n - 1)])
        in_ch = depth
    return stages


def make_input_layer() -> nn.Sequential:
    """conv3x3 (3->64, no bias) -> BN -> PReLU: keys ``0.weight``, ``1.*``, ``2.weight``."""
    return nn.Sequential(nn.Conv2d(3, 64, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))


def make_body(num_layers: int = 50, mode: str = "ir_se") -> nn.Sequential:
    """All residual units flattened into one Sequential (keys ``N.*``)."""
    if mode not in ("ir", "ir_se"):
        raise ValueError(f"mode must be 'ir' or 'ir_se', got {mode!r}")
    unit = BottleneckIRSE if mode == "ir_se" else BottleneckIR
    return nn.Sequential(*[unit(b.in_channel, b.depth, b.stride)
                           for stage in get_blocks(num_layers) for b in stage])


def upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize ``x`` to ``y``'s spatial size (align_corners=True) and add ``y`` (FPN merge)."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y
