"""HairCLIP's face parser (ffhq world): hair / face / background masks of 1024 px (or 256 px) faces.

HairCLIP (Wei et al., CVPR 2022) takes its hair mask (average-Lab colour loss) and background
mask (background loss) from a U-Net trained on CelebAMask-HQ (switchablenorms/CelebAMask-HQ,
``face_parsing/unet.py``, built from pytorch-semseg's ``unetConv2`` / ``unetUp``), shipped as
``pretrained_models/parsenet.pth`` and built in ``criteria/parse_related_loss/unet.py`` as
``unet()``: feature_scale 4 (widths 16, 32, 64, 128, 256), 19 classes, transposed-convolution
upsampling, BatchNorm. ``ParseNet`` has exactly its state-dict keys and shapes; the file is a
plain state dict (``torch.save(G.state_dict())``, PyTorch's pre-1.6 format, 136 tensors counting
the BatchNorm ``num_batches_tracked`` counters), which HairCLIP loads with ``load_state_dict``.

What HairCLIP does with it (``bg_loss.py``, ``average_lab_color_loss.py``), and ``FaceParser``
reproduces:
  * images in [-1, 1] go in as they are (CelebAMask-HQ trained with ``Normalize(0.5, 0.5)``,
    i.e. [-1, 1]; no further normalisation), shrunk to 512 x 512 by ``AdaptiveAvgPool2d``;
  * the label is the argmax over the 19 logits; hair is label 13 (``HAIR``);
  * the hair mask is ``label == 13``, the background mask ``label != 13`` (everything that is
    not hair: face, neck, clothes, the backdrop), each brought back to 1024 px by
    ``AdaptiveAvgPool2d((1024, 1024))``, which for a 2x enlargement is nearest-neighbour.
    The background loss then keeps the pixels that are background in *both* images it
    compares; that intersection is the loss's business, not the parser's.

Where we differ:
  * the label map is brought to the input's size by nearest-neighbour (the same as HairCLIP at
    1024 px; at 256 px, where HairCLIP's pooling would average 2 x 2 blocks into fractions,
    we keep one pixel of each block, so masks stay in {0, 1});
  * HairCLIP has no face mask; ours is skin plus the facial parts (``FACE_CLASSES``: nose,
    eyeglasses, eyes, brows, mouth, lips), without ears, earrings, neck, hat or clothes;
  * the network is built once and shared (HairCLIP builds it once per loss), and no device is
    hard-coded (HairCLIP moves it to CUDA): the parser runs on its weights' device, and the
    images must be there too;
  * ``ParseNet`` wants a side divisible by 16 (its four poolings); upstream would crop or fail.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from hairlib.nets.loading import fill_num_batches_tracked, load_state_dict_strict, read_checkpoint

__all__ = ["PARSER_CLASSES", "HAIR", "BACKGROUND", "FACE_CLASSES", "INPUT_SIZE", "ParseNetConfig", "ParseNet",
           "load_parser", "FaceParser"]

# CelebAMask-HQ's labels (face_parsing/README.md; index = class id); "eye_g" is eyeglasses,
# "ear_r" an earring, "neck_l" a necklace.
PARSER_CLASSES = ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                  "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
HAIR = PARSER_CLASSES.index("hair")              # 13, HairCLIP's inline constant
BACKGROUND = PARSER_CLASSES.index("background")  # 0, the backdrop only (not HairCLIP's background mask)
FACE_CLASSES = tuple(PARSER_CLASSES.index(c) for c in
                     ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip"))
INPUT_SIZE = 512  # HairCLIP's AdaptiveAvgPool2d((512, 512)) before the parser; CelebAMask-HQ's 512 px masks


@dataclass(frozen=True)
class ParseNetConfig:
    feature_scale: int = 4  # widths are (64, 128, 256, 512, 1024) divided by this (upstream's default)
    n_classes: int = 19     # len(PARSER_CLASSES)

    @property
    def widths(self) -> Tuple[int, ...]:
        return tuple(c // self.feature_scale for c in (64, 128, 256, 512, 1024))


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    # keys: .0 conv (with bias), .1 BatchNorm
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.ReLU())


class DoubleConv(nn.Module):
    """Two 3x3 conv + BN + ReLU (upstream's ``unetConv2``): [N, c_in, H, W] -> [N, c_out, H, W]."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = _conv_bn_relu(c_in, c_out)
        self.conv2 = _conv_bn_relu(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class UpBlock(nn.Module):
    """2x transposed conv of the coarse features, concatenated after the skip (upstream's ``unetUp``):
    skip [N, c_out, 2H, 2W], coarse [N, c_in, H, W] -> [N, c_out, 2H, 2W]."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = DoubleConv(c_in, c_out)  # its input: c_out (skip) + c_out (upsampled) = c_in
        self.up = nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(coarse)], 1))


class ParseNet(nn.Module):
    """HairCLIP's ``unet``: images [N, 3, H, W] in [-1, 1] (H, W divisible by 16; 512 as trained)
    -> logits [N, 19, H, W] over ``PARSER_CLASSES``."""

    def __init__(self, config: ParseNetConfig = None):
        super().__init__()
        self.config = config or ParseNetConfig()
        w = self.config.widths
        self.conv1 = DoubleConv(3, w[0])
        self.conv2 = DoubleConv(w[0], w[1])
        self.conv3 = DoubleConv(w[1], w[2])
        self.conv4 = DoubleConv(w[2], w[3])
        self.center = DoubleConv(w[3], w[4])
        self.up_concat4 = UpBlock(w[4], w[3])
        self.up_concat3 = UpBlock(w[3], w[2])
        self.up_concat2 = UpBlock(w[2], w[1])
        self.up_concat1 = UpBlock(w[1], w[0])
        self.final = nn.Conv2d(w[0], self.config.n_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % 16 or images.shape[3] % 16:
            raise ValueError(f"ParseNet wants images [N, 3, H, W] with H, W divisible by 16, got {tuple(images.shape)}")
        c1 = self.conv1(images)                # [N, 16, H, W]
        c2 = self.conv2(F.max_pool2d(c1, 2))   # [N, 32, H/2, W/2]
        c3 = self.conv3(F.max_pool2d(c2, 2))   # [N, 64, H/4, W/4]
        c4 = self.conv4(F.max_pool2d(c3, 2))   # [N, 128, H/8, W/8]
        x = self.center(F.max_pool2d(c4, 2))   # [N, 256, H/16, W/16]
        x = self.up_concat4(c4, x)
        x = self.up_concat3(c3, x)
        x = self.up_concat2(c2, x)
        x = self.up_concat1(c1, x)             # [N, 16, H, W]
        return self.final(x)


def load_parser(path_or_state_dict, device="cpu") -> ParseNet:
    """HairCLIP's ``parsenet.pth`` (a path, or its already-loaded state dict) -> ``ParseNet``,
    in eval mode, frozen, on ``device``. Read with ``torch.load(weights_only=True)``; every key
    and shape must match (a ``ValueError`` names the ones that do not). BatchNorm
    ``num_batches_tracked`` counters, absent from pre-0.4.1 files and unused in eval, may be missing."""
    sd, name = read_checkpoint(path_or_state_dict, "face-parser checkpoint")
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{name}: expected a state dict of tensors (HairCLIP's parsenet.pth), "
                         f"got a dict with keys {sorted(sd)[:8]}")
    net = ParseNet()
    load_state_dict_strict(net, fill_num_batches_tracked(net, sd), what=name)
    return net.to(device).eval().requires_grad_(False)


class FaceParser:
    """HairCLIP's use of its parser: images [N, 3, H, W] in [-1, 1], any size (1024 or 256 px),
    -> label maps and masks at the input's size.

    ``net`` maps [N, 3, 512, 512] in [-1, 1] to logits [N, 19, 512, 512] (``ParseNet`` from
    ``load_parser``). ``input_size`` is the side the images are pooled to (HairCLIP's 512).
    """

    def __init__(self, net: nn.Module, input_size: int = INPUT_SIZE):
        self.net = net
        self.input_size = input_size

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] -> logits [N, 19, input_size, input_size]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        x = F.adaptive_avg_pool2d(images.float(), self.input_size)  # HairCLIP's shrink; no normalisation
        return self.net(x)

    @torch.no_grad()
    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] -> int64 labels [N, 1, H, W], indices into ``PARSER_CLASSES``."""
        lab = self.logits(images).argmax(1, keepdim=True)  # [N, 1, input_size, input_size]
        if lab.shape[-2:] != images.shape[-2:]:
            lab = F.interpolate(lab.float(), size=images.shape[-2:], mode="nearest").long()
        return lab

    @torch.no_grad()
    def masks(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """images [N, 3, H, W] in [-1, 1] -> {"hair", "face", "background": float [N, 1, H, W] in {0, 1}}.

        hair: label 13. background: HairCLIP's background mask, everything that is not hair
        (``1 - hair``; it includes the face). face: skin and facial parts (``FACE_CLASSES``).
        """
        lab = self.labels(images)
        hair = lab == HAIR
        face = torch.isin(lab, torch.tensor(FACE_CLASSES, device=lab.device))
        return {"hair": hair.float(), "face": face.float(), "background": (~hair).float()}

    def __call__(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.masks(images)
