"""Metrics shared by the worlds and methods: KID, PSNR and SSIM (optionally inside a mask).

* ``kid``: Kernel Inception Distance (Binkowski et al., ICLR 2018): the unbiased MMD^2 with
  the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over subsets. hairlib
  computes it in the feature space of whatever network the world uses (the mini attribute
  classifier, or Inception for FFHQ).
* ``psnr`` / ``ssim``: for images in [-1, 1]; ``mask`` ([N, 1 or 3, H, W] or [N, H, W], 1 =
  counted) restricts them to a region, e.g. outside the hair as HairCLIP reports them.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["kid", "psnr", "ssim"]


def kid(feats_a: torch.Tensor, feats_b: torch.Tensor, *, subsets: int = 50, subset_size: int = 1000,
        seed: int = 0) -> tuple:
    """KID between two feature sets [Na, D] and [Nb, D] -> (mean, std) over random subsets."""
    a, b = feats_a.double(), feats_b.double()
    d = a.shape[1]
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("kid needs at least 2 samples in each set")
    gen = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(subsets):
        x = a[torch.randperm(a.shape[0], generator=gen)[:m]]
        y = b[torch.randperm(b.shape[0], generator=gen)[:m]]
        kxx = (x @ x.t() / d + 1) ** 3
        kyy = (y @ y.t() / d + 1) ** 3
        kxy = (x @ y.t() / d + 1) ** 3
        mmd = ((kxx.sum() - kxx.diagonal().sum()) + (kyy.sum() - kyy.diagonal().sum())) / (m * (m - 1)) \
            - 2 * kxy.mean()
        vals.append(mmd)
    v = torch.stack(vals)
    return float(v.mean()), float(v.std()) if len(vals) > 1 else 0.0


def _expand_mask(mask: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.ones_like(like)
    m = mask.to(like.dtype)
    if m.ndim == 3:
        m = m[:, None]
    return m.expand_as(like)


def psnr(a: torch.Tensor, b: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """PSNR in dB per image [N] for images [N, 3, H, W] in [-1, 1] (peak-to-peak 2)."""
    m = _expand_mask(mask, a)
    mse = ((a - b) ** 2 * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def ssim(a: torch.Tensor, b: torch.Tensor, mask: Optional[torch.Tensor] = None, window: int = 7) -> torch.Tensor:
    """Mean SSIM per image [N] (Wang et al. 2004, uniform window, constants for range 2)."""
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    k = torch.ones(a.shape[1], 1, window, window, dtype=a.dtype, device=a.device) / window ** 2
    pad = window // 2

    def blur(x):
        return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), k, groups=a.shape[1])

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    m = _expand_mask(mask, a)
    return (s * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
