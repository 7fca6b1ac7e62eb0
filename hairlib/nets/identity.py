"""ArcFace IR-SE50 identity network in the pSp/e4e layout (``model_ir_se50.pth``).

``Backbone`` reproduces TreB1eN's IR-SE50 as used by ``criteria/id_loss.py`` of pSp/e4e
(input 112, mode ir_se, dropout 0.6, affine final BN); its state-dict keys are
``input_layer.*``, ``output_layer.*`` and ``body.N.*``. ``ArcFace`` adds the id-loss
preprocessing of StyleCLIP / HairCLIP (``criteria/id_loss.py``): average-pool to 256 px, crop
the face region ``[35:223, 32:220]``, average-pool to 112 px. Both match the authors' code
numerically on the same weights (tested to < 1e-4; 0.0 measured on CPU).

What differs: images smaller than 256 px are resized up with bilinear interpolation, where the
authors' ``AdaptiveAvgPool2d(256)`` repeats pixels (the papers never pass such images).
"""
from __future__ import annotations

import os
from typing import Dict, Union

import torch
import torch.nn.functional as F
from torch import nn

from hairlib.nets.irse import Flatten, l2_norm, make_body, make_input_layer
from hairlib.nets.loading import fill_num_batches_tracked, load_state_dict_strict, read_checkpoint

__all__ = ["Backbone", "ArcFace", "load_arcface"]

CROP_ROWS = (35, 223)  # of a 256 px FFHQ-aligned face (pSp/e4e id_loss)
CROP_COLS = (32, 220)


class Backbone(nn.Module):
    """IR(-SE) ResNet face recogniser -> L2-normalised 512-d embedding."""

    def __init__(self, input_size: int = 112, num_layers: int = 50, mode: str = "ir_se",
                 drop_ratio: float = 0.6, affine: bool = True):
        super().__init__()
        if input_size not in (112, 224):
            raise ValueError(f"input_size must be 112 or 224, got {input_size}")
        self.input_size = input_size
        self.input_layer = make_input_layer()
        side = input_size // 16  # four stride-2 stages
        # Declared before ``body`` so that the state-dict order matches the authors' module.
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(drop_ratio), Flatten(),
                                          nn.Linear(512 * side * side, 512), nn.BatchNorm1d(512, affine=affine))
        self.body = make_body(num_layers, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2_norm(self.output_layer(self.body(self.input_layer(x))))


class ArcFace(nn.Module):
    """Frozen identity embedder with pSp/e4e's preprocessing."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone
        self.face_pool = nn.AdaptiveAvgPool2d((backbone.input_size, backbone.input_size))

    @staticmethod
    def to_256(images: torch.Tensor) -> torch.Tensor:
        """Bring images to 256 px: adaptive average pooling when larger (as pSp's face_pool),
        antialiased bilinear resize when smaller."""
        h, w = images.shape[-2:]
        if (h, w) == (256, 256):
            return images
        if h >= 256 and w >= 256:
            return F.adaptive_avg_pool2d(images, (256, 256))
        return F.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] (FFHQ-aligned, any size) -> [N, 512] unit vectors."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
        x = self.to_256(images.float())
        x = x[:, :, CROP_ROWS[0]:CROP_ROWS[1], CROP_COLS[0]:CROP_COLS[1]]
        return self.backbone(self.face_pool(x))

    forward = embed

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [N] of the identities of two image batches."""
        return (self.embed(a) * self.embed(b)).sum(-1)

    def loss(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean of 1 - cos(embed(y_hat), embed(y)); the target's embedding is detached."""
        e_hat = self.embed(y_hat)
        with torch.no_grad():
            e = self.embed(y)
        return (1 - (e_hat * e).sum(-1)).mean()

    def train(self, mode: bool = True):
        # Always in eval: BatchNorm statistics and dropout stay fixed.
        return super().train(False)


def load_arcface(path_or_state_dict: Union[str, os.PathLike, Dict[str, torch.Tensor]],
                 device="cpu") -> ArcFace:
    """Load ``model_ir_se50.pth`` (a plain state dict) or an already-loaded dict into a frozen ArcFace."""
    sd, name = read_checkpoint(path_or_state_dict, "ArcFace state dict")
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    backbone = Backbone(input_size=112, num_layers=50, mode="ir_se", drop_ratio=0.6, affine=True)
    load_state_dict_strict(backbone, fill_num_batches_tracked(backbone, sd), what=name)
    return ArcFace(backbone).to(device).eval().requires_grad_(False)
