"""Small networks of the mini world (definitions only; recipes in ``hairlib/mini/``).

``AttributeClassifier`` plays the CelebA attribute classifier's role (evaluation): one
convolutional trunk, one linear head per label of the renderer (``hairlib.mini.vocab.LABEL_NAMES``),
and a pooled feature vector that KID is computed in.

``Encoder`` plays e4e's role: image -> W+ as the generator's mean latent plus one offset per
W+ row (refined by optimisation in ``hairlib.invert``).

``IdentityNet`` plays ArcFace's role (identity loss and identity similarity): the same kind of
trunk, then a unit-norm embedding; trained so that renders of one person (same identity
parameters) embed together whatever the hair, accessories, background or pose.

``MiniParser`` plays the face parser's role: hair / face / background masks of generated
images (a small U-Net trained on renders, whose masks are exact).

Images are [N, 3, 64, 64] in [-1, 1] (renders or generator output).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from hairlib.mini.vocab import LABEL_NAMES, values_of

__all__ = ["ClassifierConfig", "AttributeClassifier", "multi_label_loss", "IdentityConfig", "IdentityNet",
           "EncoderConfig", "Encoder", "conv_trunk", "nt_xent", "PARSER_CLASSES", "ParserConfig", "MiniParser"]


def conv_trunk(widths: Tuple[int, ...]) -> nn.Sequential:
    """Stages of (3x3 conv, BN, ReLU, stride-2 3x3 conv, BN, ReLU); 64 px -> 64 / 2**len(widths)."""
    layers, c_in = [], 3
    for c in widths:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                   nn.Conv2d(c, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        c_in = c
    return nn.Sequential(*layers)


def _default_heads() -> Tuple[Tuple[str, int], ...]:
    return tuple((name, len(values_of(name))) for name in LABEL_NAMES)


@dataclass(frozen=True)
class ClassifierConfig:
    """Trunk widths (one stride-2 stage each) and the heads: (label name, number of values)."""
    widths: Tuple[int, ...] = (32, 64, 128, 256)  # channels per stage, 64 -> 4 px
    heads: Tuple[Tuple[str, int], ...] = field(default_factory=_default_heads)

    def to_dict(self) -> dict:
        return {"widths": list(self.widths), "heads": [list(h) for h in self.heads]}

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        return cls(widths=tuple(d["widths"]), heads=tuple((str(n), int(k)) for n, k in d["heads"]))


class AttributeClassifier(nn.Module):
    """images [N, 3, H, W] in [-1, 1] -> {label: logits [N, n_values]}; ``features`` -> [N, D]."""

    def __init__(self, config: ClassifierConfig = None):
        super().__init__()
        self.config = config or ClassifierConfig()
        self.trunk = conv_trunk(self.config.widths)
        self.feature_dim = c_in = self.config.widths[-1]
        self.heads = nn.ModuleDict({name: nn.Linear(c_in, k) for name, k in self.config.heads})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features [N, D] (the space KID is measured in)."""
        return self.trunk(images).mean((2, 3))

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        f = self.features(images)
        return {name: head(f) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 256) -> Dict[str, torch.Tensor]:
        """{label: predicted value index [N]}, in eval mode, batched."""
        was = self.training
        self.eval()
        out: Dict[str, list] = {name: [] for name in self.heads}
        for i in range(0, images.shape[0], batch):
            for name, logits in self(images[i:i + batch]).items():
                out[name].append(logits.argmax(1))
        self.train(was)
        return {k: torch.cat(v) for k, v in out.items()}


def multi_label_loss(logits: Dict[str, torch.Tensor], labels: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over labels of cross-entropy; label -1 (e.g. the hair colour of a bald head) is ignored."""
    total = 0.0
    for name, lg in logits.items():
        y = labels[name].to(lg.device).long()
        if (y >= 0).any():
            total = total + F.cross_entropy(lg, y, ignore_index=-1)
    return total


@dataclass(frozen=True)
class IdentityConfig:
    widths: Tuple[int, ...] = (32, 64, 128, 256)  # trunk channels per stage
    embed_dim: int = 128  # embedding size

    def to_dict(self) -> dict:
        return {"widths": list(self.widths), "embed_dim": self.embed_dim}

    @classmethod
    def from_dict(cls, d: dict) -> "IdentityConfig":
        return cls(widths=tuple(d["widths"]), embed_dim=int(d["embed_dim"]))


class IdentityNet(nn.Module):
    """images [N, 3, H, W] in [-1, 1] -> unit-norm identity embeddings [N, embed_dim]."""

    def __init__(self, config: IdentityConfig = None):
        super().__init__()
        self.config = config or IdentityConfig()
        self.trunk = conv_trunk(self.config.widths)
        self.proj = nn.Linear(self.config.widths[-1], self.config.embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.trunk(images).mean((2, 3))), dim=1)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [N] of the identities in two image batches (1 = same person)."""
        return (self(a) * self(b)).sum(1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Contrastive loss over a batch of positive pairs (z1[i], z2[i]); embeddings unit-norm [N, D]."""
    z = torch.cat([z1, z2])  # [2N, D]
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


@dataclass(frozen=True)
class EncoderConfig:
    num_ws: int  # rows of W+ (the generator's)
    style_dim: int  # width of W+ (the generator's)
    widths: Tuple[int, ...] = (32, 64, 128, 256)  # trunk channels per stage (64 -> 4 px)
    image_size: int = 64

    def to_dict(self) -> dict:
        return {"num_ws": self.num_ws, "style_dim": self.style_dim, "widths": list(self.widths), "image_size": self.image_size}

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        return cls(int(d["num_ws"]), int(d["style_dim"]), tuple(d["widths"]), int(d["image_size"]))


class Encoder(nn.Module):
    """images [N, 3, S, S] in [-1, 1] -> W+ [N, num_ws, style_dim] = latent_avg + offsets."""

    def __init__(self, config: EncoderConfig, latent_avg: torch.Tensor = None):
        super().__init__()
        self.config = config
        self.trunk = conv_trunk(config.widths)
        side = config.image_size // 2 ** len(config.widths)
        self.head = nn.Linear(config.widths[-1] * side * side, config.num_ws * config.style_dim)
        nn.init.zeros_(self.head.weight)  # starts at the mean latent
        nn.init.zeros_(self.head.bias)
        avg = torch.zeros(1, config.style_dim) if latent_avg is None else latent_avg.reshape(1, config.style_dim)
        self.register_buffer("latent_avg", avg.clone())  # the generator's mean w, shipped with the encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        delta = self.head(self.trunk(images).flatten(1)).view(-1, self.config.num_ws, self.config.style_dim)
        return self.latent_avg[:, None] + delta


PARSER_CLASSES = ("background", "face", "hair")  # the mini parser's labels (index = class id)


@dataclass(frozen=True)
class ParserConfig:
    widths: Tuple[int, ...] = (16, 32, 64)  # channels per U-Net level (64, 32, 16 px), 8 px bottleneck

    def to_dict(self) -> dict:
        return {"widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict) -> "ParserConfig":
        return cls(widths=tuple(d["widths"]))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class MiniParser(nn.Module):
    """A small U-Net: images [N, 3, H, W] in [-1, 1] -> logits [N, 3, H, W] over ``PARSER_CLASSES``
    (the mini world's face parser for generated images; renders have exact masks)."""

    def __init__(self, config: ParserConfig = None):
        super().__init__()
        self.config = config or ParserConfig()
        w = self.config.widths
        self.down = nn.ModuleList([_block(3 if i == 0 else w[i - 1], w[i]) for i in range(len(w))])
        self.mid = _block(w[-1], w[-1])
        self.up = nn.ModuleList([_block(w[i] + (w[i + 1] if i + 1 < len(w) else w[-1]), w[i])
                                 for i in reversed(range(len(w)))])
        self.head = nn.Conv2d(w[0], len(PARSER_CLASSES), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips, x = [], images
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for blk, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([skip, x], 1))
        return self.head(x)

    @torch.no_grad()
    def masks(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """{"background", "face", "hair": float [N, 1, H, W] in {0, 1}} from the argmax label."""
        labels = self(images).argmax(1, keepdim=True)
        return {name: (labels == i).float() for i, name in enumerate(PARSER_CLASSES)}
