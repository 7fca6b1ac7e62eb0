"""hairlib's own CLIP image towers, built by open_clip's timm path.

A mini CLIP config names one as ``vision_cfg = {"timm_model_name": "hairlib_mini_convnet",
"timm_pool": "avg", "timm_proj": "linear", "image_size": 64}``: open_clip builds it as it builds
any timm trunk (``TimmModel``: trunk, pooled features, a linear projection to the embedding), so
the config stays an open_clip config. ``register()`` adds the towers to timm's registry; it is
called by ``hairlib.nets.clip.build_model`` before a config that names one is built.

``hairlib_mini_convnet`` is the mini attribute classifier's trunk (``mini_nets.conv_trunk``: per
stage a 3x3 convolution at full resolution, then a stride-2 one, each with batch norm and ReLU;
32-64-128-256 channels, 64 px -> 4 px) and a global mean. Why: trained from scratch on the labels
for 1000 steps, it read every attribute of held-out renders at 94-100 %, where open_clip's
ModifiedResNet (its stem strides twice before 16 channels) read age at 60 % and glasses at 94 %.
"""
from __future__ import annotations

from typing import Tuple

from torch import nn

from hairlib.nets.mini_nets import conv_trunk

__all__ = ["ConvTower", "TOWERS", "register", "hairlib_mini_convnet"]

# timm name -> the trunk's channels per stage
TOWERS = {"hairlib_mini_convnet": (32, 64, 128, 256)}


class ConvTower(nn.Module):
    """``conv_trunk(widths)`` + global average pooling, with the timm interface open_clip's
    ``TimmModel`` reads: ``num_features``, ``default_cfg``, ``reset_classifier``."""

    def __init__(self, widths: Tuple[int, ...], num_classes: int = 0, global_pool: str = "avg"):
        super().__init__()
        self.trunk = conv_trunk(tuple(int(w) for w in widths))
        self.num_features = int(widths[-1])
        self.default_cfg = {"pool_size": None}
        self.reset_classifier(num_classes, global_pool)

    def reset_classifier(self, num_classes: int = 0, global_pool: str = "avg") -> None:
        if global_pool not in ("avg", ""):
            raise ValueError(f"ConvTower pools by 'avg' (or '' for the feature map), not {global_pool!r}")
        self.global_pool = global_pool
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x):
        x = self.trunk(x)
        if self.global_pool == "avg":
            x = x.mean((2, 3))
        return self.fc(x)


def hairlib_mini_convnet(pretrained: bool = False, num_classes: int = 0, global_pool: str = "avg", **_) -> ConvTower:
    """timm entry point (timm passes its factory options, e.g. ``pretrained_cfg``, which are ignored)."""
    if pretrained:
        raise ValueError("hairlib_mini_convnet has no pretrained weights: the mini CLIP's file holds them")
    return ConvTower(TOWERS["hairlib_mini_convnet"], num_classes=num_classes, global_pool=global_pool)


def register() -> None:
    """Add the towers to timm's model registry (once)."""
    from timm.models import is_model, register_model

    for name in TOWERS:
        if not is_model(name):
            register_model(globals()[name])
