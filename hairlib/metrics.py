"""Metrics shared by the worlds and methods: KID, PSNR and SSIM (optionally inside a mask).

* ``kid``: Kernel Inception Distance (Binkowski et al., ICLR 2018): the unbiased MMD^2 with
  the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over subsets. hairlib
  computes it in the feature space of whatever network the world uses (the mini attribute
  classifier, or Inception for FFHQ).
* ``psnr`` / ``ssim``: for images in [-1, 1]; ``mask`` ([N, 1 or 3, H, W] or [N, H, W], 1 =
  counted) restricts them to a region, e.g. outside the hair as HairCLIP reports them.
* ``ciede2000``: the CIE colour difference of 2000 (Sharma, Wu and Dalal 2005) between LAB
  colours, e.g. the mean hair colours of an edit and of its truth.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["kid", "psnr", "ssim", "ciede2000"]


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


def ciede2000(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """Delta E 2000 between LAB colours [..., 3] (kL = kC = kH = 1) -> [...]."""
    lab1, lab2 = lab1.double(), lab2.double()
    L1, a1, b1 = lab1.unbind(-1)
    L2, a2, b2 = lab2.unbind(-1)
    c_mean = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    g = 0.5 * (1 - torch.sqrt(c_mean ** 7 / (c_mean ** 7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.rad2deg(torch.atan2(b1, a1p)) % 360
    h2p = torch.rad2deg(torch.atan2(b2, a2p)) % 360
    chroma = c1p * c2p
    dh = h2p - h1p
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    dh = torch.where(chroma == 0, torch.zeros_like(dh), dh)
    d_L, d_C = L2 - L1, c2p - c1p
    d_H = 2 * torch.sqrt(chroma) * torch.sin(torch.deg2rad(dh / 2))
    L_mean, cp_mean = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum, h_diff = h1p + h2p, (h1p - h2p).abs()
    h_mean = torch.where(h_diff <= 180, h_sum / 2, torch.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2))
    h_mean = torch.where(chroma == 0, h_sum, h_mean)
    t = (1 - 0.17 * torch.cos(torch.deg2rad(h_mean - 30)) + 0.24 * torch.cos(torch.deg2rad(2 * h_mean))
         + 0.32 * torch.cos(torch.deg2rad(3 * h_mean + 6)) - 0.20 * torch.cos(torch.deg2rad(4 * h_mean - 63)))
    s_L = 1 + 0.015 * (L_mean - 50) ** 2 / torch.sqrt(20 + (L_mean - 50) ** 2)
    s_C = 1 + 0.045 * cp_mean
    s_H = 1 + 0.015 * cp_mean * t
    r_C = 2 * torch.sqrt(cp_mean ** 7 / (cp_mean ** 7 + 25.0 ** 7))
    r_T = -r_C * torch.sin(torch.deg2rad(60 * torch.exp(-(((h_mean - 275) / 25) ** 2))))
    return torch.sqrt((d_L / s_L) ** 2 + (d_C / s_C) ** 2 + (d_H / s_H) ** 2 + r_T * (d_C / s_C) * (d_H / s_H))
