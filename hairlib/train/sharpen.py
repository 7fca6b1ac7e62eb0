"""Adversarial sharpening of an autoencoder-trained StyleGAN2, anchored by reconstruction.

The warm start (``hairlib.train.warmstart``) teaches the synthesis network with an L1 loss,
which averages over what it cannot place exactly: the faces come out blurred. A plain GAN
stage from there, on a CPU budget, lost diversity within 1000 steps (a fresh discriminator
pulls every sample toward whatever fools it first). This stage keeps what the warm start
got right and adds the adversarial term only where it helps, as VQGAN / taming-transformers
(Esser et al. 2021) train their decoders:

* a frozen encoder E (the shipped W+ encoder) maps each render x to W+; the synthesis network
  decodes it, ``rec = G(E(x))``; loss ``|rec - x|_1`` keeps every render reachable, so the
  encoder, and every edit network trained on this W+ space, stays valid;
* fakes are the reconstructions and fresh samples ``G(mapping(z))`` (the mapping network is
  frozen: the sampling distribution of W does not move); a StyleGAN2 discriminator with lazy R1
  learns renders from fakes; G adds ``lambda * adv_weight * softplus(-D(fake))``, where
  ``lambda = |grad_last L1| / |grad_last adv|`` on the last ToRGB weight (VQGAN's adaptive
  weight: the adversarial gradient is never allowed to drown the reconstruction's);
* the adversarial term starts after ``d_warmup`` steps (the discriminator first learns alone);
  an EMA of G is what gets shipped.

One atomic, resumable checkpoint (``out_dir/state.pt``: G, D, G_ema, optimisers, step, RNG
states), a JSON-lines log with the held-out reconstruction PSNR, a progress bar; interrupted
runs lose nothing.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from hairlib.train.checkpoint import append_log, save_atomic
from hairlib.train.gan import discriminator_step, g_nonsaturating_loss, resume, snapshot_state

__all__ = ["SharpenConfig", "sharpen", "adaptive_weight"]


@dataclass(frozen=True)
class SharpenConfig:
    steps: int = 3000  # optimisation steps
    batch: int = 16  # renders per step (reconstructed), plus ``samples`` generator samples
    samples: int = 8  # fresh samples G(mapping(z)) per step among the fakes
    truncation: float = 1.0  # of those samples
    lr: float = 5e-4  # synthesis network, Adam betas (0, 0.99)
    d_lr: float = 2e-3  # discriminator, Adam betas (0, 0.99)
    adv_weight: float = 0.5  # on top of the adaptive weight (VQGAN's disc_weight is 0.8)
    max_adaptive: float = 1e3  # clamp of the adaptive weight
    d_warmup: int = 200  # steps of discriminator training before G sees it
    r1: float = 0.5  # R1 gamma (small images, small gamma)
    d_reg_every: int = 16  # lazy R1 interval
    ema_kimg: float = 2.0  # EMA half-life in thousands of images
    seed: int = 0
    ckpt_every: int = 100
    log_every: int = 25

    def to_dict(self) -> dict:
        return asdict(self)


def adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last: torch.Tensor,
                    clamp: float = 1e3) -> torch.Tensor:
    """VQGAN's balance ``|d rec / d last| / (|d adv / d last| + 1e-4)``, detached, in [0, clamp]."""
    (g_rec,) = torch.autograd.grad(rec_loss, last, retain_graph=True)
    (g_adv,) = torch.autograd.grad(adv_loss, last, retain_graph=True)
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0, clamp).detach()


def sharpen(G: nn.Module, D: nn.Module, encoder: nn.Module, sample_real: Callable[[int], torch.Tensor],
            cfg: SharpenConfig, out_dir, *, device="cpu", progress: bool = True,
            max_seconds: Optional[float] = None, held: Optional[torch.Tensor] = None,
            on_sample: Optional[Callable[[nn.Module, int], None]] = None, sample_every: int = 500) -> nn.Module:
    """Fine-tune ``G``'s synthesis network (its mapping stays frozen) against ``D``; return the
    EMA generator. ``sample_real(step)``: that step's renders [batch, 3, H, W] in [-1, 1] (a pure
    function of the step, so a resumed run sees the same data). ``held``: renders whose
    reconstruction PSNR (EMA generator) goes to the log every ``log_every`` steps."""
    import copy

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    G, D = G.to(device), D.to(device)
    encoder = encoder.to(device).eval().requires_grad_(False)
    G.style.requires_grad_(False)
    g_params = [p for n, p in G.named_parameters() if not n.startswith("style.")]
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    d_ratio = cfg.d_reg_every / (cfg.d_reg_every + 1)
    g_opt = torch.optim.Adam(g_params, lr=cfg.lr, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(D.parameters(), lr=cfg.d_lr * d_ratio, betas=(0.0, 0.99 ** d_ratio))
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    step = 0
    state_path = out_dir / "state.pt"
    nets = {"G": G, "D": D, "G_ema": G_ema, "g_opt": g_opt, "d_opt": d_opt}
    state = resume(state_path, cfg.to_dict(), nets, gen)
    if state is not None:
        step = int(state["step"])
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    last = G.to_rgbs[-1].conv.weight if hasattr(G, "to_rgbs") and len(G.to_rgbs) else g_params[-1]

    def checkpoint():
        save_atomic({"config": cfg.to_dict(), **snapshot_state(nets, gen), "step": step}, state_path)

    @torch.no_grad()
    def held_psnr() -> float:
        from hairlib.metrics import psnr

        return float(psnr(G_ema.synthesis(encoder(held)).clamp(-1, 1), held).mean())

    if held is not None:
        held = held.to(device)
    ema_params = [p for n, p in G_ema.named_parameters() if not n.startswith("style.")]
    ema_decay = 0.5 ** ((cfg.batch + cfg.samples) / (cfg.ema_kimg * 1000))
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc="sharpen stylegan2", disable=not progress, dynamic_ncols=True)
    t0, stats = time.time(), {}
    try:
        while step < cfg.steps:
            real = sample_real(step).to(device)
            with torch.no_grad():
                w_rec = encoder(real)  # [N, num_ws, style_dim]
                z = torch.randn(cfg.samples, G.style_dim, generator=gen).to(device)
                w_smp = G.broadcast(G.mapping(z, truncation=cfg.truncation)) if cfg.samples else w_rec[:0]
            fake = G.synthesis(torch.cat([w_rec, w_smp]), noise_mode="random")
            rec = fake[: real.shape[0]]
            # --- discriminator
            discriminator_step(D, d_opt, real, fake, step, cfg.r1, cfg.d_reg_every, stats)
            # --- generator
            D.requires_grad_(False)
            rec_loss = (rec - real).abs().mean()
            loss = rec_loss
            stats["l1"] = rec_loss.item()
            if step >= cfg.d_warmup and cfg.adv_weight > 0:
                adv = g_nonsaturating_loss(D(fake))
                lam = adaptive_weight(rec_loss, adv, last, cfg.max_adaptive)
                loss = loss + cfg.adv_weight * lam * adv
                stats.update(g=adv.item(), lam=lam.item())
            g_opt.zero_grad(set_to_none=True)
            loss.backward()
            g_opt.step()
            with torch.no_grad():  # the synthesis network only: the mapping stays bit-exact
                for pe, pm in zip(ema_params, g_params):
                    pe.mul_(ema_decay).add_(pm.detach(), alpha=1 - ema_decay)
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0:
                if held is not None:
                    stats["psnr_heldout"] = held_psnr()
                bar.set_postfix(l1=f"{stats['l1']:.3f}", d=f"{stats['d']:.3f}")
                append_log(out_dir / "log.jsonl", {"step": step, "time": round(time.time() - t0, 1),
                                                   **{k: round(v, 5) for k, v in stats.items()}})
            if step % cfg.ckpt_every == 0:
                checkpoint()
            if on_sample is not None and step % sample_every == 0:
                on_sample(G_ema, step)
            if max_seconds is not None and time.time() - t0 > max_seconds:
                break
    finally:  # interrupted (Ctrl-C, kill, time limit) or done: nothing is lost
        checkpoint()
        bar.close()
    return G_ema
