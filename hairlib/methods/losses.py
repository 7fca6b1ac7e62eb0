"""Losses shared by the methods: StyleCLIP's CLIP loss over augmented views, and HairCLIP's
(Wei et al. 2022) image losses, used by training and evaluation.

``view_clip_loss`` is StyleCLIP's CLIP loss, or (``k > 0``, not the paper's) its mean over k
random shifted / flipped views of each image (``augment_views``): a pattern that fools a small
CLIP in one view rarely fools it in all (VQGAN+CLIP's cutouts).

Facts from HairCLIP's ``criteria/`` kept exactly:

* **Average LAB colour** (``parse_related_loss/average_lab_color_loss.py``): images in [-1, 1]
  go to [0, 1], to XYZ by the sRGB matrix with each row divided by its sum (so white is
  (1, 1, 1): no gamma expansion), to CIE LAB with the 0.008856 / 7.787 / 903.3 branches; the
  colour is the mean over the hair mask of each image; the loss is L1 between the two means.
* **Background** (``bg_loss.py``): MSE between ``x * m`` and ``x_hat * m`` over the whole image,
  where m is 1 where *neither* image has hair.
* **Image embedding** (``image_embedding_loss.py``): ``1 - cos`` of CLIP's image features of the
  two hair-masked images (``CosineEmbeddingLoss`` with target 1), images average-pooled to CLIP's
  input size.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from hairlib.nets.clip import clip_loss

__all__ = ["augment_views", "view_clip_loss", "rgb_to_lab", "average_lab", "avg_lab_loss", "background_loss",
           "image_embedding_loss"]

_M = torch.tensor([[0.412453, 0.357580, 0.180423],
                   [0.212671, 0.715160, 0.072169],
                   [0.019334, 0.119193, 0.950227]])
_EPS = 0.008856


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _EPS, t.clamp_min(_EPS).pow(1 / 3), 7.787 * t + 0.137931)


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> CIE LAB [N, 3, H, W] as the authors compute it (L in 0..100)."""
    rgb = (images + 1) / 2
    m = _M.to(images.device, images.dtype)
    xyz = torch.einsum("nc,bchw->bnhw", m / m.sum(1, keepdim=True), rgb)
    fx, fy, fz = _f(xyz[:, 0]), _f(xyz[:, 1]), _f(xyz[:, 2])
    y = xyz[:, 1]
    L = torch.where(y > _EPS, 116 * fy - 16, 903.3 * y)
    return torch.stack([L, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def average_lab(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean LAB colour [N, 3] over ``mask`` [N, 1, H, W] (an empty mask gives the sum, 0)."""
    lab = rgb_to_lab(images) * mask
    return lab.sum((2, 3)) / mask.sum((2, 3)).clamp_min(1)


def avg_lab_loss(fake: torch.Tensor, fake_mask: torch.Tensor, real: torch.Tensor, real_mask: torch.Tensor) -> torch.Tensor:
    """L1 between the mean LAB hair colours of two image batches (a scalar)."""
    return F.l1_loss(average_lab(fake, fake_mask), average_lab(real, real_mask))


def background_loss(x: torch.Tensor, x_hat: torch.Tensor, hair: torch.Tensor, hair_hat: torch.Tensor) -> torch.Tensor:
    """MSE outside the hair of both images (``hair``, ``hair_hat``: [N, 1, H, W] in {0, 1})."""
    keep = (1 - hair) * (1 - hair_hat)
    return F.mse_loss(x * keep, x_hat * keep)


def image_embedding_loss(clip, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos(CLIP image features of ``a``, of ``b``), mean over the batch (gradients flow into
    both; pass ``b`` detached or under no_grad for a fixed target)."""
    return (1 - F.cosine_similarity(clip.embed_image_raw(a), clip.embed_image_raw(b), dim=-1)).mean()


def augment_views(images: torch.Tensor, k: int, gen: torch.Generator, shift: float = 0.125,
                  noise: float = 0.05) -> torch.Tensor:
    """k random views of each image [N, 3, H, W] -> [k * N, 3, H, W] (view-major): a shift by up
    to ``shift`` of the size (reflection padding), a horizontal flip (p 0.5) and Gaussian pixel
    noise. Colours are untouched, so a colour edit stays a colour edit. Averaging a CLIP loss
    over such views keeps the optimisation from the adversarial pixel patterns a small CLIP
    rewards (VQGAN+CLIP's cutouts, CLIPDraw's augmentations)."""
    n, _, h, wd = images.shape
    pad = max(1, int(round(shift * h)))
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad), mode="reflect")
    views = []
    for _ in range(k):
        dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
        v = padded[:, :, dy:dy + h, dx:dx + wd]
        if torch.rand((), generator=gen) < 0.5:
            v = v.flip(-1)
        views.append(v + noise * torch.randn(v.shape, generator=gen).to(v.device))
    return torch.cat(views)


def view_clip_loss(clip, images: torch.Tensor, text_emb: torch.Tensor, k: int,
                   gen: Optional[torch.Generator], clip_input: str = "raw") -> torch.Tensor:
    """StyleCLIP's CLIP loss per image [N]; with ``k`` > 0 its mean over ``augment_views``."""
    if k <= 0:
        return clip_loss(clip, images, text_emb, clip_input)
    n = images.shape[0]
    text_emb = text_emb.reshape(-1, text_emb.shape[-1]).expand(n, -1)
    return clip_loss(clip, augment_views(images, k, gen), text_emb.repeat(k, 1), clip_input).view(k, n).mean(0)
