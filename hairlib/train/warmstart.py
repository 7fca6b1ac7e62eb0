"""An autoencoder warm start for StyleGAN2, for training on a CPU.

A GAN learns from a discriminator's verdict, one bit per image; on two CPU cores it needs days
before faces appear. When the data come from a renderer, a generator can first be taught as
the decoder of an autoencoder (dense, per-pixel gradients), then handed to the GAN loop:

1. ``train_autoencoder``: an encoder E maps each render to one w (the StyleGAN2 W space);
   the synthesis network decodes ``broadcast(w + noise)``; loss = L1 pixels + a perceptual
   term (any frozen feature net; the mini world uses its attribute classifier's trunk).
   The latent noise makes the neighbourhood of every code decode to a face too.
2. ``fit_mapping``: the mapping network z -> w is fitted to the codes E gives to fresh
   renders, by the sliced Wasserstein distance (random 1-D projections, sorted and
   matched): sampling z then yields the renders' distribution of w, no discriminator needed.
3. ``hairlib.train.gan.train_gan(..., init=...)`` fine-tunes G adversarially from there
   (R1, path length, EMA, mixing), which sharpens what the L1 loss leaves blurred.

The ideas are old (autoencoder-initialised GANs; latent-space matching as in ALAE / "GLO"
with a fitted prior); the point here is the budget: faces in an hour of one CPU core.
Both stages run through ``hairlib.train.simple.fit``: resumable, atomic checkpoints, logs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from hairlib.metrics import psnr
from hairlib.train.simple import fit

__all__ = ["WarmStartConfig", "sliced_wasserstein", "train_autoencoder", "encode_bank", "fit_mapping"]


@dataclass(frozen=True)
class WarmStartConfig:
    ae_steps: int = 6000  # autoencoder steps
    batch: int = 16  # renders per autoencoder step
    lr: float = 0.002  # G: Adam betas (0, 0.99) as StyleGAN2, cosine decay
    encoder_lr: float = 0.001  # E: Adam betas (0.9, 0.99)
    feature_weight: float = 0.0  # perceptual (feature MSE) weight beside L1 pixels (1.0 collapsed the codes)
    latent_noise: float = 0.1  # w + noise * (per-dimension std of the batch's codes)
    map_steps: int = 3000  # mapping-network steps
    map_batch: int = 1024  # z samples and bank codes per mapping step
    map_bank: int = 8192  # codes of fresh renders the mapping is fitted to
    map_lr: float = 0.1  # Adam on the mapping (its layers multiply it by lr_mlp 0.01; 0.01 left SWD at 60 after 1500 steps, 0.1 reached 1.2)
    projections: int = 256  # random directions of the sliced Wasserstein distance
    seed: int = 0
    ckpt_every: int = 100

    def to_dict(self) -> dict:
        return asdict(self)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 256,
                       gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """Squared sliced 2-Wasserstein distance between two equal-size samples [N, D]: project on
    random unit directions, sort each projection, compare order statistics."""
    if a.shape != b.shape:
        raise ValueError(f"samples must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    dirs = F.normalize(torch.randn(a.shape[1], projections, generator=gen).to(a), dim=0)
    pa, _ = torch.sort(a @ dirs, dim=0)
    pb, _ = torch.sort(b @ dirs, dim=0)
    return (pa - pb).pow(2).mean()


def _held_psnr(G: nn.Module, E: nn.Module, held: torch.Tensor) -> float:
    """Mean PSNR of ``G.synthesis(broadcast(E(held)))`` against ``held``, E in eval mode (its
    BatchNorm statistics do not see the batch), then back in training mode."""
    E.eval()
    with torch.no_grad():
        y = G.synthesis(G.broadcast(E(held).reshape(held.shape[0], -1))).clamp(-1, 1)
    E.train()
    return float(psnr(y, held).mean())


def _held_log(G: nn.Module, E: nn.Module, held: Optional[torch.Tensor], stats: dict) -> Callable[[], dict]:
    """A ``fit`` log_fn: the loss parts in ``stats`` and, with a ``held`` batch, its PSNR."""
    def log_fn():
        if held is not None:
            stats["psnr"] = _held_psnr(G, E, held)
        return dict(stats)
    return log_fn


def _reconstruction_loss(y: torch.Tensor, x: torch.Tensor, feature_fn, feature_weight: float, stats: dict):
    """L1 pixels (into ``stats["l1"]``) + ``feature_weight`` x the feature MSE of ``feature_fn``."""
    loss = (y - x).abs().mean()
    stats["l1"] = loss.item()
    if feature_fn is not None and feature_weight:
        loss = loss + feature_weight * sum(F.mse_loss(fy, fx) for fy, fx in zip(feature_fn(y), feature_fn(x)))
    return loss


def train_autoencoder(G: nn.Module, E: nn.Module, sample_real: Callable[[int], torch.Tensor],
                      feature_fn: Optional[Callable[[torch.Tensor], List[torch.Tensor]]], cfg: WarmStartConfig,
                      out_dir, *, device="cpu", progress: bool = True, eval_batch: bool = True) -> int:
    """Stage 1: train G's synthesis network and E (images -> [N, style_dim] or [N, 1, style_dim])
    as an autoencoder. ``sample_real(step)`` returns step ``step``'s batch of images in [-1, 1]
    (a pure function of the step, so a resumed run sees the same data); ``sample_real(-1)`` is
    a held-out batch whose reconstruction PSNR goes to the log (``eval_batch``)."""
    model = nn.ModuleDict({"G": G, "E": E}).to(device)
    opt = torch.optim.Adam([{"params": G.parameters(), "lr": cfg.lr, "betas": (0.0, 0.99)},
                            {"params": E.parameters(), "lr": cfg.encoder_lr, "betas": (0.9, 0.99)}])
    gen = torch.Generator().manual_seed(cfg.seed)
    held = sample_real(-1).to(device) if eval_batch else None  # a fixed batch for the log's PSNR
    stats = {}

    def loss_fn(step: int) -> torch.Tensor:
        x = sample_real(step).to(device)
        w = E(x).reshape(x.shape[0], -1)
        if cfg.latent_noise:
            noise = torch.randn(w.shape, generator=gen).to(device)
            w = w + cfg.latent_noise * w.detach().std(0, keepdim=True) * noise
        y = G.synthesis(G.broadcast(w), noise_mode="random")
        return _reconstruction_loss(y, x, feature_fn, cfg.feature_weight, stats)

    return fit(model, opt, steps=cfg.ae_steps, lr=None, loss_fn=loss_fn, out_dir=Path(out_dir), gen=gen,
               ckpt_every=cfg.ckpt_every, meta={"warmstart": cfg.to_dict()}, desc="autoencoder", progress=progress,
               log_fn=_held_log(G, E, held, stats), log_every=50)


@torch.no_grad()
def encode_bank(E: nn.Module, sample_real: Callable[[int], torch.Tensor], n: int, *, start: int = 10 ** 6,
                device="cpu") -> torch.Tensor:
    """Codes [n, style_dim] that E gives to fresh renders (batches ``start``, ``start + 1``, ...)."""
    E = E.to(device).eval()
    codes, k = [], start
    while sum(c.shape[0] for c in codes) < n:
        x = sample_real(k).to(device)
        codes.append(E(x).reshape(x.shape[0], -1).cpu())
        k += 1
    return torch.cat(codes)[:n]


def fit_mapping(G: nn.Module, bank: torch.Tensor, cfg: WarmStartConfig, out_dir, *, device="cpu",
                progress: bool = True) -> int:
    """Stage 2: fit ``G.style`` (z -> w) so that w ~ the bank's distribution (sliced Wasserstein);
    then set G's latent average to the fitted mapping's mean."""
    G = G.to(device)
    mapping = G.style
    opt = torch.optim.Adam(mapping.parameters(), lr=cfg.map_lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    bank = bank.to(device)

    def loss_fn(step: int) -> torch.Tensor:
        z = torch.randn(cfg.map_batch, G.style_dim, generator=gen).to(device)
        idx = torch.randint(0, bank.shape[0], (cfg.map_batch,), generator=gen).to(device)
        return sliced_wasserstein(G.mapping(z), bank[idx], cfg.projections, gen) * bank.shape[1]

    step = fit(mapping, opt, steps=cfg.map_steps, lr=cfg.map_lr, loss_fn=loss_fn, out_dir=Path(out_dir), gen=gen,
               ckpt_every=cfg.ckpt_every, meta={"warmstart": cfg.to_dict()}, desc="fit mapping", progress=progress)
    G.set_latent_avg(G.mean_latent())
    return step
