"""StyleGAN2 training loop (Karras et al. 2020; the order of steps follows rosinality's train.py).

Per step: D step on real + fake (non-saturating logistic loss), every ``d_reg_every`` steps a
lazy R1 penalty on reals; G step with style mixing, every ``g_reg_every`` steps a lazy
path-length penalty; then the EMA generator. What differs from rosinality: the data is any
``sample_real(batch, generator) -> [N, 3, H, W] in [-1, 1]`` callable (the mini world renders
on the fly, so the data set is infinite and needs no augmentation); training state lives in
one atomic, resumable checkpoint; a JSON-lines log; a tqdm progress bar; no argparse.

How a step executes (``StepExecution``; never what it computes, beyond bf16 rounding) is chosen
automatically: the fast execution runs the modulated convolutions split (StyleGAN2-ADA's
``fused_modconv=False``) with one fused epilogue per layer, the discriminator once on reals and
fakes together, Adam's fused kernel and a foreach EMA, and, on a CPU with AMX-BF16, the loss
passes in bf16 autocast on channels-last activations (fp32 master weights; hairlib's CPU kernels
for the elementwise work and the blurs). The R1 and path-length penalties always run in fp32.
``execution="reference"`` runs rosinality's execution instead (fp32, grouped convolutions).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
import contextlib
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hairlib import ops
from hairlib.nets.stylegan2 import Discriminator, Generator, StyleGAN2Config
from hairlib.train.checkpoint import append_log, load_checkpoint, save_atomic

__all__ = ["ArchConfig", "GANTrainConfig", "train_gan", "d_logistic_loss", "g_nonsaturating_loss", "r1_penalty",
           "discriminator_step", "check_config", "snapshot_state", "restore_state", "resume",
           "StepExecution", "choose_execution", "GANStep", "make_optimizers", "run_steps"]


class ArchConfig:
    """``to_dict`` / ``from_dict`` (JSON-ready) of a training config dataclass whose ``arch`` is a
    ``StyleGAN2Config``."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arch"] = self.arch.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        d["arch"] = StyleGAN2Config.from_dict(d["arch"])
        return cls(**d)


@dataclass(frozen=True)
class GANTrainConfig(ArchConfig):
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


@dataclass(frozen=True)
class StepExecution:
    """How a training step executes: never what it computes, beyond bf16 rounding."""
    networks: str = "fast"  # G's and D's execution: "reference" or "fast" (see Generator.set_execution)
    dtype: torch.dtype = torch.float32  # activations in the loss passes; bf16 = CPU autocast, channels-last
    batched_d: bool = True  # D once on reals and fakes (D(cat, batches=2)) instead of twice
    fused_optim: bool = True  # Adam's fused kernel and a foreach EMA instead of per-tensor loops

    @classmethod
    def reference(cls) -> "StepExecution":
        """rosinality's execution: fp32, grouped modulated convolutions, D twice, for-loop Adam."""
        return cls("reference", torch.float32, False, False)

    @classmethod
    def fast(cls, device="cpu") -> "StepExecution":
        """The fast execution for ``device``: bf16 activations on a CPU with AMX-BF16, fp32
        elsewhere (``ops.training_dtype``)."""
        return cls("fast", ops.training_dtype(device), True, True)

    def autocast(self, device: torch.device):
        """The loss passes' autocast context (none for fp32)."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def describe(self) -> str:
        if self.networks == "reference" and not self.batched_d and not self.fused_optim:
            return "reference (fp32, grouped modconv, D twice, for-loop Adam)"
        dtype = str(self.dtype).replace("torch.", "")
        parts = [f"{self.networks} networks", dtype + (" autocast, channels-last" if dtype != "float32" else "")]
        parts += ["D once on reals+fakes"] if self.batched_d else ["D twice"]
        parts += ["fused Adam"] if self.fused_optim else ["for-loop Adam"]
        return ", ".join(parts)


def choose_execution(execution: Union[None, str, StepExecution] = None, device="cpu") -> StepExecution:
    """``None`` or "fast": the fast execution for ``device``; "reference": rosinality's; a
    ``StepExecution``: itself."""
    if isinstance(execution, StepExecution):
        return execution
    if execution in (None, "fast", "auto"):
        return StepExecution.fast(device)
    if execution == "reference":
        return StepExecution.reference()
    raise ValueError(f"execution must be 'fast', 'reference' or a StepExecution, got {execution!r}")


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


def resume(path, config: dict, nets: dict, gen: torch.Generator,
           upgrade: Optional[Callable[[dict], dict]] = None) -> Optional[dict]:
    """Load the run state at ``path`` (if any) into ``nets`` and ``gen`` after checking that it
    was trained with ``config``; returns the state (for the loop's own fields) or None.
    ``upgrade``: state -> state, applied first (a state saved before the recipe gained a part)."""
    state = load_checkpoint(path)
    if state is not None:
        if upgrade is not None:
            state = upgrade(state)
        check_config(state["config"], config, path)
        restore_state(state, nets, gen)
    return state


def discriminator_step(D, d_opt, real: torch.Tensor, fake: torch.Tensor, step: int, r1: float,
                       d_reg_every: int, stats: dict, execution: Optional[StepExecution] = None,
                       conditions: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> None:
    """One discriminator update on reals vs (detached) fakes, and on every ``d_reg_every``-th
    step the lazy R1 penalty on the reals (fp32), scaled by the interval; losses go into
    ``stats``. ``execution``: how the loss pass runs (default: reference). ``conditions``: the
    reals' and the fakes' conditions of a projection discriminator (``Discriminator(...,
    condition_dim)``), R1 taken on the reals' conditional logits."""
    ex = execution or StepExecution.reference()
    c_real, c_fake = conditions if conditions is not None else (None, None)
    D.requires_grad_(True)
    with ex.autocast(real.device):
        if ex.batched_d:
            n = real.shape[0]
            cond = None if conditions is None else torch.cat([c_real, c_fake])
            pred = D(torch.cat([real, fake.detach().to(real.dtype)]), batches=2, condition=cond)
            real_pred, fake_pred = pred[:n], pred[n:]
        else:
            real_pred, fake_pred = D(real, condition=c_real), D(fake.detach(), condition=c_fake)
        d_loss = d_logistic_loss(real_pred, fake_pred)
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    stats.update(d=d_loss.item(), real=real_pred.mean().item(), fake=fake_pred.mean().item())
    if r1 > 0 and step % d_reg_every == 0:
        x = real.detach().requires_grad_(True)
        penalty = r1_penalty(D(x, condition=c_real), x)
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
def _accumulate(ema: Generator, model: Generator, decay: float, foreach: bool = False) -> None:
    if foreach:  # one kernel per list instead of two per tensor; equal up to rounding
        torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay)
        torch._foreach_copy_(list(ema.buffers()), list(model.buffers()))
        return
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def make_optimizers(G: Generator, D: Discriminator, cfg: "GANTrainConfig", execution: StepExecution):
    """rosinality's Adam pair (betas (0, 0.99), lazily corrected for the regularisation
    intervals); the fast execution uses Adam's fused kernel."""
    g_ratio = cfg.g_reg_every / (cfg.g_reg_every + 1)
    d_ratio = cfg.d_reg_every / (cfg.d_reg_every + 1)
    kw = {"fused": True} if execution.fused_optim else {}
    g_opt = torch.optim.Adam(G.parameters(), lr=cfg.lr * g_ratio, betas=(0.0, 0.99 ** g_ratio), **kw)
    d_opt = torch.optim.Adam(D.parameters(), lr=cfg.lr * d_ratio, betas=(0.0, 0.99 ** d_ratio), **kw)
    return g_opt, d_opt


def _set_adam_impl(opt: torch.optim.Optimizer, fused: bool) -> None:
    """After loading an optimiser's state (which carries the saving run's implementation
    flags), use the implementation this run's execution asks for."""
    for group in opt.param_groups:
        group["fused"] = True if fused else None
        group["foreach"] = None


class GANStep:
    """One train_gan iteration without its bookkeeping, on given networks and optimisers.

    ``step(real, index, stats)``: D update on ``real`` vs fresh fakes (+ the lazy R1 penalty when
    ``index % d_reg_every == 0``), G update with style mixing (+ the lazy path-length penalty when
    ``index % g_reg_every == 0``), then the EMA generator if one is given. Latents come from
    ``gen``; the noise inputs from the global RNG. ``hairlib bench train`` times exactly this.
    """

    def __init__(self, G: Generator, D: Discriminator, g_opt, d_opt, cfg: "GANTrainConfig",
                 execution: StepExecution, gen: torch.Generator, device, G_ema: Optional[Generator] = None):
        self.G, self.D, self.g_opt, self.d_opt, self.G_ema = G, D, g_opt, d_opt, G_ema
        self.cfg, self.ex, self.gen, self.device = cfg, execution, gen, torch.device(device)
        self.mean_path = torch.zeros((), device=self.device)  # path-length running mean
        self.ema_decay = 0.5 ** (cfg.batch / (cfg.ema_kimg * 1000))
        G.set_execution(execution.networks)
        D.set_execution(execution.networks)
        if execution.dtype != torch.float32 and self.device.type == "cpu":
            # channels-last master weights: the convolutions' weight gradients come back in that
            # layout (their inputs are channels-last), so accumulating them needs no transposing copy
            D.to(memory_format=torch.channels_last)

    def step(self, real: torch.Tensor, index: int, stats: dict) -> None:
        G, D, cfg, ex, gen, dev = self.G, self.D, self.cfg, self.ex, self.gen, self.device
        z_dim = cfg.arch.style_dim
        # --- discriminator
        with torch.no_grad(), ex.autocast(dev):
            fake = G.synthesis(_sample_wplus(G, cfg.batch, z_dim, cfg.mixing, dev, gen), noise_mode="random")
        G.requires_grad_(False)
        discriminator_step(D, self.d_opt, real, fake, index, cfg.r1, cfg.d_reg_every, stats, ex)
        # --- generator
        G.requires_grad_(True)
        D.requires_grad_(False)
        wplus = _sample_wplus(G, cfg.batch, z_dim, cfg.mixing, dev, gen)
        with ex.autocast(dev):
            g_loss = g_nonsaturating_loss(D(G.synthesis(wplus, noise_mode="random")))
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        stats["g"] = g_loss.item()
        if cfg.path_regularize > 0 and index % cfg.g_reg_every == 0:
            pl, self.mean_path, pl_mean = _path_length_penalty(G, max(1, cfg.batch // cfg.path_batch_shrink),
                                                               z_dim, self.mean_path, dev, gen)
            self.g_opt.zero_grad(set_to_none=True)
            (cfg.path_regularize * cfg.g_reg_every * pl).backward()
            self.g_opt.step()
            stats["path"] = pl_mean.item()
        if self.G_ema is not None:
            _accumulate(self.G_ema, G, self.ema_decay, foreach=ex.fused_optim)


def train_gan(cfg: GANTrainConfig, sample_real: Callable[[int, torch.Generator], torch.Tensor], out_dir,
              *, device="cpu", progress: bool = True, max_seconds: Optional[float] = None,
              on_sample: Optional[Callable[[Generator, int], None]] = None,
              init: Optional[dict] = None, execution: Union[None, str, StepExecution] = None) -> Generator:
    """Train (or resume) a StyleGAN2 in ``out_dir``; return the EMA generator.

    ``out_dir`` holds ``state.pt`` (everything needed to resume: G, D, G_ema, optimisers,
    step, RNG state), ``config.json`` and ``log.jsonl``. Stops after ``cfg.steps`` or
    ``max_seconds`` of wall time, checkpointing first; rerunning resumes where it stopped.
    ``execution``: "fast" (default, chosen for ``device``: see ``StepExecution.fast``),
    "reference" (rosinality's), or a ``StepExecution``; it is not part of the run's
    configuration, so a run may resume under another execution.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    ex = choose_execution(execution, device)
    torch.manual_seed(cfg.seed)
    G, D = Generator(cfg.arch).to(device), Discriminator(cfg.arch).to(device)
    G_ema = Generator(cfg.arch).to(device).eval().requires_grad_(False)
    if init is not None:
        G.load_state_dict(init)
    G_ema.load_state_dict(G.state_dict())
    g_opt, d_opt = make_optimizers(G, D, cfg, ex)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    runner = GANStep(G, D, g_opt, d_opt, cfg, ex, gen, device, G_ema=G_ema)

    state_path = out_dir / "state.pt"
    nets = {"G": G, "D": D, "G_ema": G_ema, "g_opt": g_opt, "d_opt": d_opt}
    state = resume(state_path, cfg.to_dict(), nets, gen)
    if state is not None:
        step, runner.mean_path = int(state["step"]), state["mean_path"].to(device)
        _set_adam_impl(g_opt, ex.fused_optim)
        _set_adam_impl(d_opt, ex.fused_optim)
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    def checkpoint(step: int, elapsed: float) -> None:
        save_atomic({"config": cfg.to_dict(), **snapshot_state(nets, gen), "step": step,
                     "mean_path": runner.mean_path.cpu()}, state_path)

    stats: dict = {}
    run_steps(cfg, step, lambda i: runner.step(sample_real(cfg.batch, gen).to(device), i, stats), stats, out_dir,
              checkpoint, desc="train stylegan2", progress=progress, log_fields=lambda s: {"time": round(s, 1)},
              on_sample=on_sample and (lambda i: on_sample(G_ema, i)), max_seconds=max_seconds)
    return G_ema


def run_steps(cfg, step: int, one_step: Callable[[int], None], stats: dict, out_dir: Path,
              checkpoint: Callable[[int, float], None], *, desc: str, progress: bool = True,
              postfix: Sequence[str] = ("d", "g"), log_fields: Callable[[float], dict] = lambda s: {},
              on_sample: Optional[Callable[[int], None]] = None, max_seconds: Optional[float] = None) -> int:
    """The bookkeeping the GAN loops share. ``one_step(i)`` runs step i (filling ``stats``) until
    ``cfg.steps`` or ``max_seconds`` of wall time; a progress bar showing ``postfix``; every
    ``cfg.log_every`` steps a line of ``out_dir/log.jsonl`` (the step, ``log_fields(seconds)``, the
    stats); ``checkpoint(step, seconds)`` every ``cfg.ckpt_every`` steps and once more whatever
    ends the loop (done, the time budget, Ctrl-C, ``kill``); ``on_sample(step)`` every
    ``cfg.sample_every``. Returns the step reached."""
    t_start = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        while step < cfg.steps and not (max_seconds is not None and time.time() - t_start >= max_seconds):
            one_step(step)
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0:
                bar.set_postfix({k: f"{stats[k]:.3f}" for k in postfix})
                append_log(out_dir / "log.jsonl", {"step": step, **log_fields(time.time() - t_start),
                                                   **{k: round(v, 5) for k, v in stats.items()}})
            if step % cfg.ckpt_every == 0:
                checkpoint(step, time.time() - t_start)
            if on_sample is not None and step % cfg.sample_every == 0:
                on_sample(step)
    finally:  # interrupted or done: nothing is lost
        checkpoint(step, time.time() - t_start)
        bar.close()
    return step
