"""StyleCLIP latent optimisation (Patashnik et al. 2021, section 4).

Optimise the latent of each image so that its picture matches a text in CLIP, staying near
the source latent and keeping the person:

    loss = D_CLIP(G(w), t) + l2_lambda * ||w - w_s||^2 + id_lambda * (1 - cos(ID(G(w)), ID(G(w_s))))

as the authors' ``run_optimization.py`` does: Adam, learning rate 0.1 with a cosine ramp-down
over the last quarter and a linear ramp-up over the first 5 %, 300 steps, noise fixed, the text
embedded as written (no templates). Differences: a batch of latents (or of prompts) is
optimised at once, each sample's loss summed so that its gradient is what a run of its own
would get; optimisation in StyleSpace S is ``space="s"``; ``augment=K`` averages the CLIP loss
over K random views of each image (``augment_views``; drawn per batch, so a batched run then
matches single runs in distribution rather than bit for bit).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Union

import torch

from hairlib.methods.losses import view_clip_loss
from hairlib.methods.result import EditResult, method_settings

__all__ = ["OptimizeConfig", "optimize", "lr_schedule"]


@dataclass(frozen=True)
class OptimizeConfig:
    steps: int = 300  # Adam steps (the authors' Colab uses 40)
    lr: float = 0.1  # peak learning rate
    l2_lambda: float = 0.008  # latent L2 weight (sum of squares over the latent)
    id_lambda: float = 0.005  # identity loss weight
    rampdown: float = 0.25  # fraction of steps of the cosine ramp-down
    rampup: float = 0.05  # fraction of steps of the linear ramp-up
    space: str = "w+"  # "w+" or "s" (StyleSpace)
    templates: Optional[str] = None  # None: the text as written (StyleCLIP); "imagenet": 80 templates
    augment: int = 0  # > 0: the CLIP loss is the mean over this many randomly shifted / flipped views
    clip_input: str = "raw"  # "raw": the [-1, 1] image into CLIP (the authors'); "normalized": CLIP's mean/std
    seed: int = 0  # of the views


def lr_schedule(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """StyleCLIP's ``get_lr``: t in [0, 1] -> learning rate."""
    ramp = min(1.0, (1 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)


def _identity_loss(world, images: torch.Tensor, source_emb: torch.Tensor) -> torch.Tensor:
    return 1 - (world.identity(images) * source_emb).sum(1)  # [N]


def optimize(world, latents: torch.Tensor, text: Union[str, Sequence[str]], cfg: Optional[OptimizeConfig] = None,
             *, settings=None, progress: bool = True, **overrides) -> EditResult:
    """Edit W+ latents [N, num_ws, D] toward ``text`` (one prompt for all, or one per latent).

    ``cfg``: the settings; None: ``settings``' (``hairlib.methods.settings.resolve``: the world's,
    or "paper"). ``overrides`` replace fields of it (e.g. ``steps=40``). Returns an EditResult whose
    ``latents`` are W+ (``space="w+"``) or the list of StyleSpace tensors (``space="s"``),
    with the loss curve and the time taken."""
    cfg = cfg or method_settings(world, settings, "optimize", OptimizeConfig())
    cfg = replace(cfg, **overrides) if overrides else cfg
    if cfg.space not in ("w+", "s"):
        raise ValueError(f"space must be 'w+' or 's', got {cfg.space!r}")
    G = world.generator
    w_src = latents.detach().to(world.device)
    n = w_src.shape[0]
    texts = [text] * n if isinstance(text, str) else list(text)
    if len(texts) != n:
        raise ValueError(f"{len(texts)} prompts for {n} latents: give one prompt, or one per latent")
    t0 = time.time()
    txt = world.clip.encode_text(texts, templates=cfg.templates)  # [N, D]
    with torch.no_grad():
        src_images = world.generate(w_src)
        src_id = world.identity(src_images) if cfg.id_lambda else None
        init: List[torch.Tensor] = [w_src] if cfg.space == "w+" else [s.detach() for s in G.styles(w_src)]
    params = [p.clone().requires_grad_(True) for p in init]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    synth = (lambda ps: G.synthesis(ps[0], noise_mode="const")) if cfg.space == "w+" else \
        (lambda ps: G.synthesize_from_styles(ps, noise_mode="const"))
    losses = []
    gen = torch.Generator().manual_seed(cfg.seed)
    from tqdm.auto import tqdm

    for i in tqdm(range(cfg.steps), desc=f"optimize {texts[0]!r}", disable=not progress, leave=False):
        opt.param_groups[0]["lr"] = lr_schedule(i / cfg.steps, cfg.lr, cfg.rampdown, cfg.rampup)
        img = synth(params)
        per_sample = view_clip_loss(world.clip, img, txt, cfg.augment, gen, cfg.clip_input)
        per_sample = per_sample + cfg.l2_lambda * sum((p - q).pow(2).flatten(1).sum(1) for p, q in zip(params, init))
        if cfg.id_lambda:
            per_sample = per_sample + cfg.id_lambda * _identity_loss(world, img, src_id)
        loss = per_sample.sum()
        grads = torch.autograd.grad(loss, params)  # only the latents (the networks are frozen)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        losses.append(loss.item() / n)
    with torch.no_grad():
        edited = [p.detach() for p in params]
        images = synth(edited).clamp(-1, 1)
    out = edited[0] if cfg.space == "w+" else edited
    return EditResult(latents=out, images=images, source_images=src_images.clamp(-1, 1), method="optimize",
                      text=texts[0] if len(set(texts)) == 1 else texts, losses=losses, seconds=time.time() - t0,
                      info={"space": cfg.space, "steps": cfg.steps})
