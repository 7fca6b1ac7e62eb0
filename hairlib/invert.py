"""GAN inversion: images -> W+ latents of a generator, by an encoder and/or optimisation.

``invert(G, images, encoder=...)`` starts from the encoder's W+ (e4e's role; the mean latent
when there is none) and refines it by optimisation (Adam on W+, as projectors do after an
encoder): a pixel MSE term, plus a perceptual term when a feature network is given (LPIPS on
FFHQ when its weights are available; the mini world passes an LPIPS of its attribute classifier's
trunk, ``hairlib.mini.train_encoder.perceptual_features``),
plus optional pulls that keep W+ editable: toward the starting latent (``latent_weight``) and of
the W+ rows toward their mean (``delta_weight``, e4e's idea). The learning rate is
constant or follows StyleGAN2's projector (``lr_schedule="ramp"``: a linear ramp up over the first
5 % of the steps, a cosine ramp down over the last 25 %).

Images are [N, 3, H, W] in [-1, 1] at the generator's resolution; W+ is [N, num_ws, style_dim].
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

from hairlib.metrics import psnr

__all__ = ["InvertConfig", "InversionResult", "invert", "lr_at", "refine"]

LR_SCHEDULES = ("const", "ramp")


@dataclass(frozen=True)
class InvertConfig:
    steps: int = 150  # optimisation steps after the encoder (0: encoder only)
    lr: float = 0.02  # Adam learning rate on W+ (the peak, with a schedule)
    lr_schedule: str = "const"  # const | ramp (StyleGAN2's projector: up over 5 %, cosine down over the last 25 %)
    pixel_weight: float = 1.0  # MSE in [-1, 1] units
    feature_weight: float = 0.5  # perceptual distance, when a feature network is given
    latent_weight: float = 0.0  # ||w - w_init||^2 per row; > 0 keeps the latent near the encoder's
    delta_weight: float = 0.0  # ||w_i - mean_j w_j||^2 per row (e4e's delta idea); > 0 keeps W+ rows together
    noise_mode: str = "const"  # generator noise during inversion (const: deterministic)


@dataclass
class InversionResult:
    wplus: torch.Tensor  # [N, num_ws, style_dim]
    images: torch.Tensor  # [N, 3, H, W] reconstructions in [-1, 1]
    losses: List[float] = field(default_factory=list)  # total loss per step
    psnr: Optional[torch.Tensor] = None  # [N] dB against the targets
    seconds: float = 0.0


def lr_at(cfg: InvertConfig, step: int) -> float:
    """The learning rate of ``step`` (0-based) of ``cfg.steps``."""
    if cfg.lr_schedule == "const":
        return cfg.lr
    if cfg.lr_schedule != "ramp":
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {cfg.lr_schedule!r}")
    t = step / max(cfg.steps, 1)
    down = 0.5 - 0.5 * math.cos(min(1.0, (1.0 - t) / 0.25) * math.pi)
    return cfg.lr * down * min(1.0, t / 0.05)


def _features(feature_net, x):
    f = feature_net(x)
    return f if isinstance(f, (list, tuple)) else [f]


def refine(G, targets: torch.Tensor, w_init: torch.Tensor, *, cfg: InvertConfig = InvertConfig(),
           feature_net: Optional[Callable] = None, progress: bool = False) -> InversionResult:
    """Optimise W+ from ``w_init`` so that ``G.synthesis(W+)`` reproduces ``targets``."""
    t0 = time.time()
    if targets.shape[-1] != G.size:
        raise ValueError(f"targets are {targets.shape[-1]} px; the generator makes {G.size} px images")
    w_init = w_init.detach()
    lr_at(cfg, 0)  # an unknown schedule fails before any work
    w = w_init.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=cfg.lr)
    with torch.no_grad():
        target_feats = [f.detach() for f in _features(feature_net, targets)] if feature_net and cfg.feature_weight else []
    losses = []
    from tqdm.auto import tqdm

    for step in tqdm(range(cfg.steps), desc="invert", disable=not progress, leave=False):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        img = G.synthesis(w, noise_mode=cfg.noise_mode)
        loss = cfg.pixel_weight * F.mse_loss(img, targets)
        if target_feats:
            loss = loss + cfg.feature_weight * sum(F.mse_loss(a, b) for a, b in zip(_features(feature_net, img), target_feats))
        if cfg.latent_weight:
            loss = loss + cfg.latent_weight * (w - w_init).pow(2).sum(-1).mean()
        if cfg.delta_weight:
            loss = loss + cfg.delta_weight * (w - w.mean(1, keepdim=True)).pow(2).sum(-1).mean()
        (w.grad,) = torch.autograd.grad(loss, w)  # only W+ (the generator's weights collect nothing)
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        images = G.synthesis(w, noise_mode=cfg.noise_mode).clamp(-1, 1)
    return InversionResult(w.detach(), images, losses, psnr(images, targets.clamp(-1, 1)), time.time() - t0)


def invert(G, targets: torch.Tensor, *, encoder: Optional[Callable] = None, cfg: InvertConfig = InvertConfig(),
           feature_net: Optional[Callable] = None, progress: bool = False) -> InversionResult:
    """Encoder (if any) then ``cfg.steps`` of optimisation. Returns W+, reconstructions, PSNR."""
    with torch.no_grad():
        if encoder is not None:
            w0 = encoder(targets)
        else:
            w0 = G.broadcast(G.get_latent_avg().expand(targets.shape[0], -1))
    return refine(G, targets, w0, cfg=cfg, feature_net=feature_net, progress=progress)
