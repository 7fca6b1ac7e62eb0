"""StyleGAN2 training loop (Karras et al. 2020; the order of steps follows rosinality's train.py).

Per step: D step on real + fake (non-saturating logistic loss), every ``d_reg_every`` steps a
lazy R1 penalty on reals; G step with style mixing, every ``g_reg_every`` steps a lazy
path-length penalty; then the EMA generator. What differs from rosinality: the data is any
``sample_real(batch, generator) -> [N, 3, H, W] in [-1, 1]`` callable (the mini world renders
on the fly, so the data set is infinite and needs no augmentation); training state lives in
one atomic, resumable checkpoint; a JSON-lines log; a tqdm progress bar; no argparse.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from hairlib.nets.stylegan2 import Discriminator, Generator, StyleGAN2Config
from hairlib.train.checkpoint import append_log, load_checkpoint, save_atomic

__all__ = ["GANTrainConfig", "train_gan", "d_logistic_loss", "g_nonsaturating_loss", "r1_penalty",
           "discriminator_step", "check_config", "snapshot_state", "restore_state", "resume"]


@dataclass(frozen=True)
class GANTrainConfig:
    """Hyperparameters; defaults are rosinality's/StyleGAN2's unless noted."""
    arch: StyleGAN2Config = StyleGAN2Config()  # generator/discriminator architecture
    batch: int = 16  # images per step
    steps: int = 100_000  # total optimisation steps
    lr: float = 0.002  # Adam learning rate (betas (0, 0.99), lazily corrected)
    r1: float = 10.0  # R1 weight (gamma); small images want smaller values
    d_reg_every: int = 16  # lazy R1 interval
    g_reg_every: int = 4  # lazy path-length interval
    path_regularize: float = 2.0  # path-length weight
    path_batch_shrink: int = 2  # path-length batch = batch // this
    mixing: float = 0.9  # style-mixing probability
    ema_kimg: float = 10.0  # EMA half-life in thousands of images
    seed: int = 0  # seeds z, data and initialisation
    ckpt_every: int = 500  # steps between checkpoints
    sample_every: int = 1000  # steps between sample grids
    log_every: int = 50  # steps between log lines

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arch"] = self.arch.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GANTrainConfig":
        d = dict(d)
        d["arch"] = StyleGAN2Config.from_dict(d["arch"])
        return cls(**d)


def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_pred).mean()


def r1_penalty(real_pred: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 over reals (double backward through the ops)."""
    (grad,) = torch.autograd.grad(real_pred.sum(), real_img, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def check_config(saved: dict, current: dict, path,
                 free=("steps", "ckpt_every", "sample_every", "log_every")) -> None:
    """Refuse to resume a run folder trained with another configuration (``free`` keys may differ)."""
    diff = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v and k not in free}
    if diff:
        raise ValueError(f"{path} was trained with another configuration: {diff}; "
                         f"use a new output folder or the same configuration")


def snapshot_state(nets: dict, gen: torch.Generator) -> dict:
    """{name: state_dict} of networks and optimisers, plus the data generator's and the global
    RNG's states (the noise inputs draw from the global generator)."""
    return {**{k: m.state_dict() for k, m in nets.items()}, "rng": gen.get_state(), "torch_rng": torch.get_rng_state()}


def restore_state(state: dict, nets: dict, gen: torch.Generator) -> None:
    """The inverse of ``snapshot_state``."""
    for k, m in nets.items():
        m.load_state_dict(state[k])
    gen.set_state(state["rng"])
    torch.set_rng_state(state["torch_rng"])


def resume(path, config: dict, nets: dict, gen: torch.Generator) -> Optional[dict]:
    """Load the run state at ``path`` (if any) into ``nets`` and ``gen`` after checking that it
    was trained with ``config``; returns the state (for the loop's own fields) or None."""
    state = load_checkpoint(path)
    if state is not None:
        check_config(state["config"], config, path)
        restore_state(state, nets, gen)
    return state


def discriminator_step(D, d_opt, real: torch.Tensor, fake: torch.Tensor, step: int, r1: float,
                       d_reg_every: int, stats: dict) -> None:
    """One discriminator update on reals vs (detached) fakes, and on every ``d_reg_every``-th
    step the lazy R1 penalty on the reals, scaled by the interval; losses go into ``stats``."""
    D.requires_grad_(True)
    real_pred, fake_pred = D(real), D(fake.detach())
    d_loss = d_logistic_loss(real_pred, fake_pred)
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    stats.update(d=d_loss.item(), real=real_pred.mean().item(), fake=fake_pred.mean().item())
    if r1 > 0 and step % d_reg_every == 0:
        x = real.detach().requires_grad_(True)
        penalty = r1_penalty(D(x), x)
        d_opt.zero_grad(set_to_none=True)
        (r1 / 2 * penalty * d_reg_every).backward()
        d_opt.step()
        stats["r1"] = penalty.item()


def _path_length_penalty(G: Generator, batch: int, z_dim: int, mean_path: torch.Tensor, device, gen):
    z = torch.randn(batch, z_dim, generator=gen).to(device)
    wplus = G.broadcast(G.mapping(z))
    img = G.synthesis(wplus, noise_mode="random")
    noise = torch.randn(img.shape, generator=gen).to(device) / math.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img * noise).sum(), wplus, create_graph=True)
    lengths = grad.pow(2).sum(2).mean(1).sqrt()
    new_mean = mean_path + 0.01 * (lengths.mean().detach() - mean_path)
    return (lengths - new_mean).pow(2).mean(), new_mean, lengths.mean().detach()


def _sample_wplus(G: Generator, batch: int, z_dim: int, mixing: float, device, gen) -> torch.Tensor:
    z1 = torch.randn(batch, z_dim, generator=gen).to(device)
    if mixing > 0 and torch.rand((), generator=gen).item() < mixing:
        z2 = torch.randn(batch, z_dim, generator=gen).to(device)
        idx = int(torch.randint(1, G.num_ws, (), generator=gen))
        return G.mix(G.mapping(z1), G.mapping(z2), idx)
    return G.broadcast(G.mapping(z1))


@torch.no_grad()
def _accumulate(ema: Generator, model: Generator, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def train_gan(cfg: GANTrainConfig, sample_real: Callable[[int, torch.Generator], torch.Tensor], out_dir,
              *, device="cpu", progress: bool = True, max_seconds: Optional[float] = None,
              on_sample: Optional[Callable[[Generator, int], None]] = None,
              init: Optional[dict] = None) -> Generator:
    """Train (or resume) a StyleGAN2 in ``out_dir``; return the EMA generator.

    ``out_dir`` holds ``state.pt`` (everything needed to resume: G, D, G_ema, optimisers,
    step, RNG state), ``config.json`` and ``log.jsonl``. Stops after ``cfg.steps`` or
    ``max_seconds`` of wall time, checkpointing first; rerunning resumes where it stopped.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    G, D = Generator(cfg.arch).to(device), Discriminator(cfg.arch).to(device)
    G_ema = Generator(cfg.arch).to(device).eval().requires_grad_(False)
    if init is not None:
        G.load_state_dict(init)
    G_ema.load_state_dict(G.state_dict())
    g_ratio = cfg.g_reg_every / (cfg.g_reg_every + 1)
    d_ratio = cfg.d_reg_every / (cfg.d_reg_every + 1)
    g_opt = torch.optim.Adam(G.parameters(), lr=cfg.lr * g_ratio, betas=(0.0, 0.99 ** g_ratio))
    d_opt = torch.optim.Adam(D.parameters(), lr=cfg.lr * d_ratio, betas=(0.0, 0.99 ** d_ratio))
    gen = torch.Generator().manual_seed(cfg.seed)
    step, mean_path = 0, torch.zeros((), device=device)

    state_path = out_dir / "state.pt"
    nets = {"G": G, "D": D, "G_ema": G_ema, "g_opt": g_opt, "d_opt": d_opt}
    state = resume(state_path, cfg.to_dict(), nets, gen)
    if state is not None:
        step, mean_path = int(state["step"]), state["mean_path"].to(device)
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    def checkpoint():
        save_atomic({"config": cfg.to_dict(), **snapshot_state(nets, gen), "step": step, "mean_path": mean_path.cpu()},
                    state_path)

    ema_decay = 0.5 ** (cfg.batch / (cfg.ema_kimg * 1000))
    z_dim = cfg.arch.style_dim
    t_start = time.time()
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc="train stylegan2", disable=not progress, dynamic_ncols=True)
    stats = {}
    try:
        while step < cfg.steps:
            # --- discriminator
            real = sample_real(cfg.batch, gen).to(device)
            with torch.no_grad():
                fake = G.synthesis(_sample_wplus(G, cfg.batch, z_dim, cfg.mixing, device, gen), noise_mode="random")
            G.requires_grad_(False)
            discriminator_step(D, d_opt, real, fake, step, cfg.r1, cfg.d_reg_every, stats)
            # --- generator
            G.requires_grad_(True)
            D.requires_grad_(False)
            fake = G.synthesis(_sample_wplus(G, cfg.batch, z_dim, cfg.mixing, device, gen), noise_mode="random")
            g_loss = g_nonsaturating_loss(D(fake))
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
            stats["g"] = g_loss.item()
            if cfg.path_regularize > 0 and step % cfg.g_reg_every == 0:
                pl, mean_path, pl_mean = _path_length_penalty(G, max(1, cfg.batch // cfg.path_batch_shrink), z_dim,
                                                             mean_path, device, gen)
                g_opt.zero_grad(set_to_none=True)
                (cfg.path_regularize * cfg.g_reg_every * pl).backward()
                g_opt.step()
                stats["path"] = pl_mean.item()
            _accumulate(G_ema, G, ema_decay)
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0:
                bar.set_postfix(d=f"{stats['d']:.3f}", g=f"{stats['g']:.3f}")
                append_log(out_dir / "log.jsonl", {"step": step, "time": round(time.time() - t_start, 1), **{k: round(v, 5) for k, v in stats.items()}})
            if step % cfg.ckpt_every == 0:
                checkpoint()
            if on_sample is not None and step % cfg.sample_every == 0:
                on_sample(G_ema, step)
            if max_seconds is not None and time.time() - t_start > max_seconds:
                break
    finally:  # interrupted (Ctrl-C, time limit) or done: nothing is lost
        checkpoint()
        bar.close()
    return G_ema
