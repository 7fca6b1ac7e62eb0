"""ManiCLIP's face parser: BiSeNet with 19 CelebAMask-HQ classes, hair / face / background masks.

ManiCLIP (hwang1996/ManiCLIP) takes the masks of its background and face-colour losses from the
BiSeNet of zllrunning/face-parsing.PyTorch, copied into ``external/parsing`` (``bisenet.py``,
``resnet.py``) and built in ``train.py``'s ``init_parsing_model`` as ``BiSeNet(n_classes=19)``,
loaded from ``external/parsing/models/bisenet.pth`` with a strict ``load_state_dict``, eval
mode. The public file for this network is face-parsing.PyTorch's ``79999_iter.pth`` (that
ManiCLIP's copy is the same file is not checked): a plain state dict without ``module.``
prefixes, which upstream's ``test.py`` loads the same way. ``BiSeNet`` here has exactly their
state-dict keys and shapes, in their order (191 entries: 160 tensors, 13.3 M numbers, and 31
BatchNorm ``num_batches_tracked`` counters):

  * ``cp.resnet.*``: a ResNet-18 without its classifier (``conv1``, ``bn1``, ``layer1..4`` of two
    basic blocks each, ``downsample.0`` / ``.1`` on the first block of layers 2-4); it gives
    features at 1/8, 1/16 and 1/32 of the input (128, 256, 512 channels);
  * ``cp.arm16``, ``cp.arm32``: attention refinement (3x3 conv + BN + ReLU, then the features
    times ``sigmoid(BN(1x1 conv(global mean)))``); ``cp.conv_avg``: 1x1 conv + BN + ReLU of the
    global mean of the 1/32 features, added to ``arm32``'s output; each sum is enlarged 2x
    (nearest, to the finer map's size) and passed through ``cp.conv_head32`` /
    ``cp.conv_head16`` (3x3 conv + BN + ReLU, 128 channels);
  * no spatial path: the 1/8 ResNet features stand in for it; ``ffm`` fuses them with the
    context path's 1/8 output (concatenation, 1x1 conv + BN + ReLU to 256, then ``x + x *
    sigmoid(conv2(relu(conv1(global mean))))``);
  * three heads (3x3 conv + BN + ReLU, then a 1x1 conv to 19 classes, no bias): ``conv_out`` on
    the fusion, ``conv_out16`` and ``conv_out32`` on the context path's 1/8 and 1/16 outputs,
    each enlarged to the input's size, bilinear with ``align_corners=True``. ``forward`` returns
    the three, as theirs does in eval mode; only the first is used for parsing (``logits``
    skips the two auxiliary heads).

No convolution has a bias; all but the fusion's two attention convolutions and the heads' final
1x1 convolutions are followed by BatchNorm. Their ResNet-18 downloads torchvision's ImageNet
weights when it is built; ours does not (the checkpoint supplies every weight).

What ManiCLIP does with it (``utils/utils.py``'s ``parse_mask`` and ``resize``, ``train.py``),
and ``BiSeNetParser.masks(..., authors_resize=True)`` reproduces:
  * the generator's images, clamped to [-1, 1], go in as they are. face-parsing.PyTorch trained
    on ImageNet-normalised images (``Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))``
    of [0, 1] pixels); ManiCLIP does not normalise, and neither do we;
  * their own ``resize`` (not torchvision's) brings them to 512 x 512: bilinear
    (``F.interpolate`` defaults: ``align_corners=False``, no antialiasing) when the target is
    taller than the image, ``mode="area"`` (average pooling) when it is shorter, nothing when the
    heights are equal. It compares heights only;
  * the label is the argmax of the first output; the hair mask is label 17, the face mask labels
    1-13 (``(out >= 1) == (out <= 13)``, which is ``1 <= out <= 13``: skin, brows, eyes,
    eyeglasses, ears, earrings, nose, mouth, lips; not neck, necklace, cloth or hat);
  * both float masks go back to the generator's size (``--size``, 256 by default) by the same
    ``resize``: area pooling below 512 px, bilinear above. So at 256 px a mask is the mean of
    2 x 2 blocks, in {0, 1/4, 1/2, 3/4, 1}, and at 1024 px edges get fractions too;
  * ``train.py`` takes as background ``((hair + face) == 0)``: pixels with no trace of either.

Where we differ:
  * ``BiSeNetParser.masks`` (the default) brings the 512 px label map to the input's size by
    nearest-neighbour, so masks stay in {0, 1} and hair, face and background partition the image
    (as ``hairlib.nets.parser.FaceParser`` does). Wherever the authors' mask is exactly 0 or 1,
    ours equals it; where theirs is a fraction, ours is 0 or 1. ``authors_resize=True`` gives
    their fractional masks and background;
  * when the heights are equal but the widths are not, their ``resize`` leaves the image alone;
    ours resizes it, choosing the mode by the widths (ManiCLIP's images are square);
  * no device is hard-coded (ManiCLIP moves the network to CUDA): the parser runs on its weights'
    device, and the images must be there too.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from hairlib.nets.loading import fill_num_batches_tracked, load_state_dict_strict, read_checkpoint

__all__ = ["BISENET_CLASSES", "HAIR", "FACE_CLASSES", "INPUT_SIZE", "BiSeNet", "load_bisenet", "maniclip_resize",
           "BiSeNetParser"]

# face-parsing.PyTorch's labels (its face_dataset.py writes CelebAMask-HQ's parts with labels 1-18 in this
# order; ManiCLIP's comment "14: neck, 16: cloth, 17: hair" agrees). "eye_g" is eyeglasses, "ear_r" an
# earring, "neck_l" a necklace. The order differs from HairCLIP's parser (hairlib.nets.parser).
BISENET_CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                   "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
HAIR = BISENET_CLASSES.index("hair")  # 17, ManiCLIP's `out == 17`
FACE_CLASSES = tuple(range(1, 14))    # ManiCLIP's `(out >= 1) == (out <= 13)`: skin .. l_lip, ears included
INPUT_SIZE = 512  # parse_mask's `size = 512`; face-parsing.PyTorch's 512 px training images


class ConvBNReLU(nn.Module):
    """Bias-free k x k conv, BatchNorm, ReLU (keys ``conv``, ``bn``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet's basic block: relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x)))))); the shortcut is a
    strided 1x1 conv + BN (``downsample.0`` / ``.1``) when the width or the resolution changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if c_in != c_out or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class ResNet18(nn.Module):
    """ResNet-18 without pooling head or classifier: images [N, 3, H, W] -> features at 1/8, 1/16 and
    1/32 of the input ([N, 128 | 256 | 512, ...])."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


def _global_mean(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, x.shape[2:])  # [N, C, 1, 1], as the authors pool


class AttentionRefinement(nn.Module):
    """feat = conv(x); feat * sigmoid(bn_atten(conv_atten(global mean of feat)))."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = ConvBNReLU(c_in, c_out)
        self.conv_atten = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(_global_mean(feat))))


class ContextPath(nn.Module):
    """ResNet-18 plus attention refinement: images -> (ResNet 1/8 features [N, 128, H/8, W/8],
    context at 1/8 [N, 128, H/8, W/8], context at 1/16 [N, 128, H/16, W/16])."""

    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel=1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        avg = F.interpolate(self.conv_avg(_global_mean(feat32)), feat32.shape[2:], mode="nearest")
        up32 = F.interpolate(self.arm32(feat32) + avg, feat16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, feat8.shape[2:], mode="nearest")
        up16 = self.conv_head16(up16)
        return feat8, up16, up32


class FeatureFusion(nn.Module):
    """feat = convblk(cat(a, b)); feat + feat * sigmoid(conv2(relu(conv1(global mean of feat))))."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.convblk = ConvBNReLU(c_in, c_out, kernel=1)
        self.conv1 = nn.Conv2d(c_out, c_out // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out // 4, c_out, 1, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([a, b], 1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_mean(feat)))))
        return feat * atten + feat


class OutputHead(nn.Module):
    """3x3 conv + BN + ReLU to ``c_mid``, then a bias-free 1x1 conv to the class logits."""

    def __init__(self, c_in: int, c_mid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(c_in, c_mid)
        self.conv_out = nn.Conv2d(c_mid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """face-parsing.PyTorch's BiSeNet (ManiCLIP's ``external/parsing``): images [N, 3, H, W] ->
    (logits, logits16, logits32), each [N, n_classes, H, W] over ``BISENET_CLASSES``. The first is
    the parse; the other two are the auxiliary heads used in training. Any size works; ManiCLIP
    runs it at 512 px."""

    def __init__(self, n_classes: int = 19):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, n_classes)
        self.conv_out16 = OutputHead(128, 64, n_classes)
        self.conv_out32 = OutputHead(128, 64, n_classes)

    @staticmethod
    def _check(images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"BiSeNet wants images [N, 3, H, W], got {tuple(images.shape)}")

    @staticmethod
    def _enlarge(x: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(x, size, mode="bilinear", align_corners=True)

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._check(images)
        size = images.shape[2:]
        feat8, context8, context16 = self.cp(images)
        out = self.conv_out(self.ffm(feat8, context8))
        return (self._enlarge(out, size), self._enlarge(self.conv_out16(context8), size),
                self._enlarge(self.conv_out32(context16), size))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The first output of ``forward`` alone (the auxiliary heads are not computed)."""
        self._check(images)
        feat8, context8, _ = self.cp(images)
        return self._enlarge(self.conv_out(self.ffm(feat8, context8)), images.shape[2:])


def load_bisenet(path_or_state_dict, device="cpu") -> BiSeNet:
    """face-parsing.PyTorch's ``79999_iter.pth`` (ManiCLIP's ``bisenet.pth``; a path, or its
    already-loaded state dict) -> ``BiSeNet``, in eval mode, frozen, on ``device``. Read with
    ``torch.load(weights_only=True)``; every key and shape must match (a ``ValueError`` names the
    ones that do not), as in the authors' strict ``load_state_dict``: keys carry no ``module.``
    prefix. BatchNorm ``num_batches_tracked`` counters, unused in eval, may be missing."""
    sd, name = read_checkpoint(path_or_state_dict, "BiSeNet checkpoint")
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{name}: expected a state dict of tensors (face-parsing.PyTorch's 79999_iter.pth), "
                         f"got a dict with keys {sorted(sd)[:8]}")
    net = BiSeNet()
    load_state_dict_strict(net, fill_num_batches_tracked(net, sd), what=name)
    return net.to(device).eval().requires_grad_(False)


def maniclip_resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """ManiCLIP's ``resize`` for [N, C, H, W]: bilinear (``align_corners=False``, no antialiasing) to a
    larger ``size``, area pooling to a smaller one, ``x`` itself at its own size. Like theirs, the
    heights decide the mode; unlike theirs, equal heights with unequal widths still resize (the
    widths decide)."""
    h, w = x.shape[-2:]
    size = (int(size[0]), int(size[1]))
    if (h, w) == size:
        return x
    enlarge = size[0] > h if size[0] != h else size[1] > w
    if enlarge:
        return F.interpolate(x, size, mode="bilinear", align_corners=False)
    return F.interpolate(x, size, mode="area")


class BiSeNetParser:
    """ManiCLIP's use of its parser (``parse_mask``): images [N, 3, H, W] in [-1, 1], any size,
    -> label maps and masks at the input's size.

    ``net`` maps [N, 3, 512, 512] in [-1, 1] to logits [N, 19, 512, 512], or to a tuple whose first
    entry is those (``BiSeNet`` from ``load_bisenet``; only its main head is run). ``input_size``
    is the side the images are resized to (ManiCLIP's 512).
    """

    def __init__(self, net: nn.Module, input_size: int = INPUT_SIZE):
        self.net = net
        self.input_size = input_size

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] -> logits [N, 19, input_size, input_size]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        x = maniclip_resize(images.float(), (self.input_size, self.input_size))  # no normalisation
        out = self.net.logits(x) if isinstance(self.net, BiSeNet) else self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    @torch.no_grad()
    def parse(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] -> int64 labels [N, 1, input_size, input_size], indices into
        ``BISENET_CLASSES`` (ManiCLIP's ``out[0].argmax(dim=1, keepdim=True)``)."""
        return self.logits(images).argmax(1, keepdim=True)

    @torch.no_grad()
    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] -> int64 labels [N, 1, H, W] (the parse, nearest-neighbour)."""
        return self._to_size(self.parse(images), images.shape[-2:])

    @staticmethod
    def _to_size(labels: torch.Tensor, size) -> torch.Tensor:
        if labels.shape[-2:] == tuple(size):
            return labels
        return F.interpolate(labels.float(), size=tuple(size), mode="nearest").long()

    @staticmethod
    def masks_from_parse(labels: torch.Tensor, size: Sequence[int],
                         authors_resize: bool = False) -> Dict[str, torch.Tensor]:
        """int64 labels [N, 1, h, w] (``parse``'s) -> masks [N, 1, *size] as ``masks`` describes."""
        size = (int(size[0]), int(size[1]))
        if not authors_resize:
            labels = BiSeNetParser._to_size(labels, size)
        hair = (labels == HAIR).float()
        face = ((labels >= FACE_CLASSES[0]) & (labels <= FACE_CLASSES[-1])).float()
        if not authors_resize:
            return {"hair": hair, "face": face, "background": 1 - hair - face}
        hair, face = maniclip_resize(hair, size), maniclip_resize(face, size)
        return {"hair": hair, "face": face, "background": ((hair + face) == 0).float()}

    @torch.no_grad()
    def masks(self, images: torch.Tensor, authors_resize: bool = False) -> Dict[str, torch.Tensor]:
        """images [N, 3, H, W] in [-1, 1] -> {"hair", "face", "background": float [N, 1, H, W]}.

        hair: label 17. face: labels 1-13 (skin, brows, eyes, eyeglasses, ears, earring, nose, mouth,
        lips). background: the rest (backdrop, neck, necklace, cloth, hat). By default the label map
        is brought to the input's size by nearest-neighbour: masks in {0, 1} that partition the
        image. ``authors_resize=True``: ManiCLIP's ``parse_mask`` exactly, the 512 px hair and face
        masks resized as floats (area pooling below 512 px, bilinear above: fractions at region
        edges), and ``train.py``'s background ``(hair + face) == 0``.
        """
        return self.masks_from_parse(self.parse(images), images.shape[-2:], authors_resize)

    def __call__(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.masks(images)
