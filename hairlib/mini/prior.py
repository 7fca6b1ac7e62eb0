"""Which face each StyleGAN z stands for: the renderer's training law as a function of z.

StyleGAN2 draws z ~ N(0, I) and its mapping network starts with PixelNorm, so it only ever sees
the point z / rms(z) on the sphere of radius sqrt(d). Each coordinate of that point has a known
law (the first coordinate of a uniform point on a sphere: density proportional to
(1 - t^2 / d) ** ((d - 3) / 2)), so its CDF turns it into an exact uniform number. The first
``render.PRIOR_SLOTS`` of those uniforms drive ``render.params_from_uniforms``, which draws
every field of ``FaceParams`` from its own slots with the train split's exact law.

``params_from_z(z)`` is then a deterministic face for every z, and z ~ N(0, I) gives faces with
exactly the renderer's training distribution: the mini generator is trained so that G(z) draws
the render of ``params_from_z(z)`` (paired supervision: every hairstyle and colour is covered,
nothing can collapse), sharpened by its discriminator (``hairlib.mini.train_stylegan2``).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import numpy as np
import torch

from hairlib.mini import render as R
from hairlib.nets.stylegan2 import PixelNorm

__all__ = ["sphere_uniforms", "params_from_z", "features_from_z", "pixel_norm"]

pixel_norm = PixelNorm()  # z / rms(z) per row: the mapping network's own first layer


@lru_cache(maxsize=8)
def _sphere_cdf(d: int, points: int = 200_001):
    """Grid t in [-1, 1] and the CDF of one coordinate of a uniform point on the unit sphere of
    R^d (density proportional to (1 - t^2) ** ((d - 3) / 2)), by the trapezoid rule."""
    t = np.linspace(-1.0, 1.0, points)
    dens = np.clip(1.0 - t * t, 0.0, None) ** ((d - 3) / 2)
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2)])
    return t, cdf / cdf[-1]


def sphere_uniforms(z: torch.Tensor, slots: int = R.PRIOR_SLOTS) -> np.ndarray:
    """z [n, d] -> [n, slots] numbers in [0, 1), i.i.d. uniform when z ~ N(0, I): the CDF of each of
    the first ``slots`` coordinates of PixelNorm(z). Depends on z only through PixelNorm(z)."""
    z = torch.as_tensor(z).detach().double().cpu()
    if z.ndim != 2 or z.shape[1] < max(slots, 3):
        raise ValueError(f"expected z of shape [n, d] with d >= {max(slots, 3)}, got {tuple(z.shape)}")
    d = z.shape[1]
    t, cdf = _sphere_cdf(d)
    x = (pixel_norm(z)[:, :slots] / math.sqrt(d)).numpy()
    return np.interp(x, t, cdf).clip(0.0, np.nextafter(1.0, 0.0))


def params_from_z(z: torch.Tensor, split: Optional[str] = "train") -> list:
    """The ``FaceParams`` each row of z stands for (``render.params_from_uniforms`` of
    ``sphere_uniforms(z)``): z ~ N(0, I) gives ``render.sample_params(split=split)``'s law."""
    return R.params_from_uniforms(sphere_uniforms(z), split=split)


def features_from_z(z: torch.Tensor, split: Optional[str] = "train") -> torch.Tensor:
    """``render.params_features`` of the faces z stands for: float32 [n, PARAM_FEATURES]."""
    return torch.from_numpy(R.params_features(params_from_z(z, split=split)))
