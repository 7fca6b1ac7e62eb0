"""A StyleGAN2 taught by pairs and sharpened by its discriminator.

Where every latent z stands for a known image (the mini renderer: ``hairlib.mini.prior`` ties
each z to one face), G(z) can be supervised directly against that image: nothing can collapse,
every mode of the data is covered, and the adversarial loss only has to make the result sharp.
Per step (the order of ``hairlib.train.gan``):

* D: the non-saturating logistic loss on the pairs' images (real) and G's images of other
  latents, every ``d_reg_every`` steps the lazy R1 penalty on the reals;
* G: ``pair_weight`` x ``pair_loss(G(z), image(z))`` on the samples that are not style-mixed,
  plus the non-saturating loss on all of them (a fraction ``mixing`` of the samples mixes two
  latents at a random row, which D alone judges: the rows of W+ stay separable for editing);
* the EMA generator.

The path-length regulariser is left out: the pairs fix G's Jacobian far more than it would.

Anchored codes (``anchor_layers > 0``): where each pair also carries the face's parameters as a
feature vector, a small code network ``A`` (``anchor_layers`` equalised linear layers with leaky
ReLU, as the mapping's) turns them into w, and the synthesis draws the pairs from A's codes (the
losses above, D's fakes too); the mapping, which then gets no other gradient, is fitted to A's
codes by regression: ``anchor_steps`` Adam steps per step on the mean squared distance of
mapping(z) to A(features(z)) (A held fixed), over ``anchor_batch`` fresh latents each (the
first also over the pairs' own), whose features cost no render. Learning which face each
z stands for through the synthesis's pixels is slow for a field that is a step function of z
(a hairstyle); regressing onto codes is direct. Sampling is unchanged: G(z) = synthesis(mapping(z)).
Conditional discriminator (``projection_from >= 0``, anchored runs): from that step on, D is a
projection discriminator (Miyato & Koyama 2018) conditioned on the face's features, judging
(image, face) pairs as pix2pix's conditional GAN does (Isola et al. 2017: L1 alone settles on
the per-pixel median and drops structures whose place it cannot yet pin down; a conditional D
penalises an image that lacks what its face has). Its embedding starts at zero, so the switch
continues the unconditional run smoothly; style-mixed fakes get a zero condition (judged
unconditionally).
Atomic, resumable ``state.pt`` (``hairlib.train.gan``'s format, plus the training seconds summed
over every session), ``log.jsonl``, a time budget.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple, Union

import torch
from tqdm.auto import tqdm

from hairlib.nets.stylegan2 import Discriminator, EqualLinear, Generator, StyleGAN2Config
from hairlib.train.checkpoint import save_atomic
from hairlib.train.gan import (ArchConfig, StepExecution, _accumulate, _set_adam_impl, choose_execution, discriminator_step,
                               g_nonsaturating_loss, resume, run_steps, snapshot_state)

__all__ = ["PairedGANConfig", "CodeNetwork", "train_paired_gan", "mixed_wplus", "mixed_codes", "fit_mapping"]


@dataclass(frozen=True)
class PairedGANConfig(ArchConfig):
    arch: StyleGAN2Config = StyleGAN2Config(size=64, style_dim=128, n_mlp=8, channel_multiplier=0.5, channel_max=128)
    batch: int = 16  # pairs per step
    steps: int = 100_000
    lr: float = 0.002  # Adam, betas (0, 0.99), lazily corrected for R1 (as StyleGAN2)
    pair_weight: float = 10.0  # weight of the paired loss beside the adversarial one (1)
    adv_weight: float = 1.0  # weight of the non-saturating loss in G's step
    r1: float = 0.5  # R1 gamma (small images want a small gamma)
    d_reg_every: int = 16
    mixing: float = 0.25  # fraction of samples whose W+ mixes two latents (judged by D only)
    ema_kimg: float = 5.0  # EMA half-life in thousands of images
    seed: int = 0
    ckpt_every: int = 250
    sample_every: int = 1000
    log_every: int = 25
    anchor_layers: int = 0  # > 0: the synthesis draws from a code network of the face's features (see above)
    anchor_batch: int = 128  # latents per regression step of the mapping onto the codes
    anchor_steps: int = 4  # regression steps of the mapping per step
    anchor_lr: float = 0.01  # the mapping's Adam learning rate in the regression (betas 0.9, 0.99)
    projection_from: int = -1  # >= 0 (anchored): D conditioned on the face's features from this step on


class CodeNetwork(torch.nn.Module):
    """Face features [N, F] -> w [N, style_dim]: ``layers`` equalised linear layers with fused
    leaky ReLU, as StyleGAN2's mapping network."""

    def __init__(self, features: int, style_dim: int, layers: int):
        super().__init__()
        dims = [features] + [style_dim] * layers
        self.net = torch.nn.Sequential(*[EqualLinear(a, b, activation="fused_lrelu") for a, b in zip(dims, dims[1:])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _cross(G: Generator, w: torch.Tensor, other_of: Callable[[], Optional[torch.Tensor]], mixing: float,
           gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """W+ ``w`` with a fraction ``mixing`` of its samples taking ``other_of()``'s rows from a random
    W+ row (>= 1) on; and the mask [N] of samples left unmixed (all of them when ``other_of``
    gives None)."""
    n = w.shape[0]
    mixed = torch.rand(n, generator=gen) < mixing
    if not mixed.any():
        return w, ~mixed
    other = other_of()
    if other is None:
        return w, torch.ones(n, dtype=torch.bool)
    cut = torch.randint(1, G.num_ws, (n,), generator=gen)
    take = ((torch.arange(G.num_ws)[None, :] >= cut[:, None]) & mixed[:, None]).to(w.device)[:, :, None]
    return torch.where(take, other, w), ~mixed


def mixed_wplus(G: Generator, z: torch.Tensor, mixing: float, gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """W+ [N, num_ws, D] of ``z`` [N, z_dim], a fraction ``mixing`` of the rows crossed at a random
    W+ row with the w of another random latent; and the mask [N] of rows left unmixed."""
    other = lambda: G.broadcast(G.mapping(torch.randn(z.shape[0], z.shape[1], generator=gen).to(z.device)))  # noqa: E731
    return _cross(G, G.broadcast(G.mapping(z)), other, mixing, gen)


def mixed_codes(G: Generator, codes: torch.Tensor, mixing: float, gen: torch.Generator
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``mixed_wplus`` for given codes [N, D]: the mixed rows take the code of the next sample in
    the batch from a random W+ row on."""
    w = G.broadcast(codes)
    return _cross(G, w, lambda: w.roll(1, 0) if codes.shape[0] > 1 else None, mixing, gen)


def train_paired_gan(cfg: PairedGANConfig, pairs: Iterator[dict], pair_loss: Callable, out_dir, *,
                     device="cpu", progress: bool = True, max_seconds: Optional[float] = None,
                     on_sample: Optional[Callable[[Generator, int], None]] = None,
                     execution: Union[None, str, StepExecution] = None,
                     features: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Tuple[Generator, int]:
    """Train (or resume) in ``out_dir``; return (the EMA generator, the step reached).

    pairs: yields {"z": [B, z_dim], "images": [B, 3, S, S] in [-1, 1]} in step order (a resumed
    run is handed the stream from its step: ``hairlib.mini.data.stream(..., start=step)``; its
    first item is read only after the state is loaded, so build it lazily). pair_loss: (fake,
    real) -> per-sample loss [B]. execution: how the steps run (``hairlib.train.gan.StepExecution``;
    default the fast one for ``device``: split modulated convolutions, bf16 autocast on a CPU with
    AMX-BF16, R1 in fp32); it never changes what a step computes beyond bf16 rounding.
    With ``cfg.anchor_layers``: the pairs also carry "features" [B, F], and ``features(z)`` gives
    those of any latents (the anchor batch).
    """
    anchored = cfg.anchor_layers > 0
    if anchored and features is None:
        raise ValueError("anchor_layers > 0 needs features(z), the face features of any latents")
    if cfg.projection_from >= 0 and not anchored:
        raise ValueError("projection_from >= 0 conditions D on the face features: it needs anchor_layers > 0")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    n_feat = features(torch.zeros(1, cfg.arch.style_dim)).shape[1] if anchored else 0
    G = Generator(cfg.arch).to(device)
    D = Discriminator(cfg.arch, condition_dim=n_feat if cfg.projection_from >= 0 else 0).to(device)
    G_ema = Generator(cfg.arch).to(device).eval().requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    ex = choose_execution(execution, device)
    G.set_execution(ex.networks)
    D.set_execution(ex.networks)
    if ex.dtype != torch.float32 and device.type == "cpu":
        D.to(memory_format=torch.channels_last)  # weight gradients arrive channels-last: no transposing copy
    d_ratio = cfg.d_reg_every / (cfg.d_reg_every + 1)
    kw = {"fused": True} if ex.fused_optim else {}
    mapping = list(G.style.parameters()) if anchored else []  # anchored: fitted by regression alone
    g_opt = torch.optim.Adam([p for p in G.parameters() if all(p is not q for q in mapping)], lr=cfg.lr,
                             betas=(0.0, 0.99), **kw)
    d_opt = torch.optim.Adam(D.parameters(), lr=cfg.lr * d_ratio, betas=(0.0, 0.99 ** d_ratio), **kw)
    gen = torch.Generator().manual_seed(cfg.seed)
    nets = {"G": G, "D": D, "G_ema": G_ema, "g_opt": g_opt, "d_opt": d_opt}
    if anchored:
        A = CodeNetwork(n_feat, cfg.arch.style_dim, cfg.anchor_layers).to(device)
        a_opt = torch.optim.Adam(A.parameters(), lr=cfg.lr, betas=(0.0, 0.99), **kw)
        m_opt = torch.optim.Adam(mapping, lr=cfg.anchor_lr, betas=(0.9, 0.99), **kw)
        nets.update(A=A, a_opt=a_opt, m_opt=m_opt)
    state_path = out_dir / "state.pt"
    state = resume(state_path, cfg.to_dict(), nets, gen, upgrade=lambda st: _with_projection(st, cfg, D))
    step = int(state["step"]) if state is not None else 0
    for opt in (g_opt, d_opt) + ((a_opt, m_opt) if anchored else ()):
        _set_adam_impl(opt, ex.fused_optim)
    seconds = float(state.get("seconds", 0.0)) if state is not None else 0.0  # training time over all sessions
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    def checkpoint(step: int, elapsed: float) -> None:
        save_atomic({"config": cfg.to_dict(), **snapshot_state(nets, gen), "step": step, "seconds": seconds + elapsed},
                    state_path)

    ctx = lambda: ex.autocast(device)  # noqa: E731
    ema_decay = 0.5 ** (cfg.batch / (cfg.ema_kimg * 1000))
    stats: dict = {}

    def one_step(step: int) -> None:
        item = next(pairs)
        z, real = item["z"].to(device), item["images"].to(device)
        feats = item["features"].to(device) if anchored else None
        # --- discriminator: the pairs' images against G's images of fresh latents (anchored: of
        # the pairs' codes)
        G.requires_grad_(False)
        with torch.no_grad(), ctx():
            if anchored:
                w_fake, kept = mixed_codes(G, A(feats).float(), cfg.mixing, gen)
            else:
                w_fake, kept = mixed_wplus(G, torch.randn(z.shape, generator=gen).to(device), cfg.mixing, gen)
            fake = G.synthesis(w_fake, noise_mode="random").float()
        projected = 0 <= cfg.projection_from <= step
        conditions = (feats, feats * kept.to(device)[:, None].float()) if projected else None
        discriminator_step(D, d_opt, real, fake, step, cfg.r1, cfg.d_reg_every, stats, ex, conditions)
        # --- generator: the pairs, and the discriminator
        G.requires_grad_(True)
        D.requires_grad_(False)
        with ctx():
            if anchored:
                codes = A(feats).float()
                w, unmixed = mixed_codes(G, codes, cfg.mixing, gen)
            else:
                w, unmixed = mixed_wplus(G, z, cfg.mixing, gen)
            img = G.synthesis(w, noise_mode="random").float()
            keep = unmixed.to(device).float()
            adv = g_nonsaturating_loss(D(img, condition=feats * keep[:, None] if projected else None))
            per = pair_loss(img, real)  # [B]
            paired = (per * keep).sum() / keep.sum().clamp_min(1.0)
            g_loss = cfg.pair_weight * paired + cfg.adv_weight * adv
        if anchored:
            a_opt.zero_grad(set_to_none=True)
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        if anchored:
            a_opt.step()
            # the mapping learns the codes (fp32: G.mapping runs outside autocast)
            for k in range(cfg.anchor_steps):
                zk = torch.randn(cfg.anchor_batch, z.shape[1], generator=gen)
                with torch.no_grad():
                    target = A(features(zk).to(device)).float()
                    if k == 0:
                        zk, target = torch.cat([z.cpu(), zk]), torch.cat([A(feats).float(), target])
                anchor = (G.mapping(zk.to(device)) - target).pow(2).mean()
                m_opt.zero_grad(set_to_none=True)
                anchor.backward()
                m_opt.step()
            stats["anchor"] = anchor.item()
        stats.update(g=adv.item(), pair=paired.item())
        _accumulate(G_ema, G, ema_decay, foreach=ex.fused_optim)

    step = run_steps(cfg, step, one_step, stats, out_dir, checkpoint, desc="train stylegan2 (paired)",
                     progress=progress, postfix=("pair", "d", "g") + (("anchor",) if anchored else ()), log_fields=lambda s: {"seconds": round(seconds + s, 1)},
                     on_sample=on_sample and (lambda i: on_sample(G_ema, i)), max_seconds=max_seconds)
    return G_ema, step


def _with_projection(state: dict, cfg: PairedGANConfig, D: Discriminator) -> dict:
    """A state saved without the conditional discriminator (``projection_from`` absent or -1 in
    its config) at a step not past ``cfg.projection_from``: D gets the zero embedding and its
    optimiser a slot for it, so that the run continues as ``cfg`` says."""
    if state["config"].get("projection_from", -1) >= 0 or not 0 <= state["step"] <= cfg.projection_from:
        return state
    state = dict(state, config=dict(state["config"], projection_from=cfg.projection_from))
    state["D"] = dict(state["D"], **{"embed.weight": torch.zeros_like(D.embed.weight)})
    opt = state["d_opt"]
    params = opt["param_groups"][0]["params"]
    state["d_opt"] = dict(opt, param_groups=[dict(opt["param_groups"][0], params=params + [max(params) + 1])]
                          + opt["param_groups"][1:])
    return state


def fit_mapping(G: Generator, A: CodeNetwork, features: Callable[[torch.Tensor], torch.Tensor], *, steps: int = 20_000,
                batch: int = 512, lr: float = 0.01, bank: int = 200_000, seed: int = 0, progress: bool = True) -> dict:
    """Fit ``G``'s mapping (in place) to the frozen codes ``A(features(z))`` by regression: Adam
    (betas 0.9, 0.99) at ``lr`` with a cosine decay over ``steps`` minibatches of ``batch`` from a
    bank of ``bank`` latents (their features computed once). The codes stand still, unlike during
    training, so this ends what the training's regression steps began. Returns {"r2": the share
    of the codes' variance the mapping explains on 4 096 latents outside the bank, "mse", ...}."""
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    A = A.eval().requires_grad_(False)

    def codes_of(z: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(z), 8192):
            out.append(A(features(z[i:i + 8192]).to(device)).float())
        return torch.cat(out)

    with torch.no_grad():
        Z = torch.randn(bank, G.style_dim, generator=gen)
        C = codes_of(Z)
        z_test = torch.randn(4096, G.style_dim, generator=gen)
        c_test = codes_of(z_test)
    params = list(G.style.parameters())
    G.requires_grad_(False)
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    for _ in tqdm(range(steps), desc="fit mapping to the codes", disable=not progress, unit="step"):
        idx = torch.randint(0, bank, (batch,), generator=gen)
        loss = (G.mapping(Z[idx].to(device)) - C[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    G.requires_grad_(False)
    G.has_latent_avg = False  # the mean w moved with the mapping
    with torch.no_grad():
        mse = (G.mapping(z_test.to(device)) - c_test).pow(2).mean().item()
    var = c_test.var(0).mean().item()
    return {"r2": 1 - mse / var, "mse": mse, "code_variance": var, "steps": steps, "batch": batch, "lr": lr, "bank": bank}
