"""Recipe: the mini world's StyleGAN2, trained on renders of the mini renderer.

    python -m hairlib.mini.train_stylegan2 [--hours H] [--device cuda] [--threads T]   # paired
    python -m hairlib.mini.train_stylegan2 --pack   # keep the run's state and log in git
    python -m hairlib.mini.train_stylegan2 --export paired   # ship its EMA generator
    python -m hairlib.mini.train_stylegan2 --stage warm && ... --export warm   # the shipped one's

``--stage paired`` (the default; ``DIR/paired/``): every z stands for one face of the renderer's
training law (``hairlib.mini.prior``), and G(z) is taught the render of that face (L1 plus the
shipped classifier trunk's features, ``pair_loss``) beside the non-saturating loss of a
StyleGAN2 discriminator that sharpens it (``hairlib.train.paired_gan``; ``PAIRED``: 64 px, W+ of
10 rows of 128, 128 channels up to 32 px and 64 at 64 px, R1 gamma 0.5,
a quarter of the samples style-mixed and judged by D alone). Anchored codes: the synthesis draws
the pairs from a code network of each face's parameters (``render.params_features``), and the
mapping regresses onto those codes (``anchor_layers``; without them, after 4 100 steps colours
followed z but hairstyles did not). The mapping has 4 layers at the full learning rate: fitted
to the faces' features by regression, 8 layers (StyleGAN2's) reach R2 0.84 on the floats and
29 % on the hairstyle in 4 000 steps, 4 layers 0.96 and 81 %. The pairs cover every hairstyle and
colour and leave nothing to collapse; the training runs on the fast CPU path (bf16 on AMX).
From step 7 227 D is conditioned on the face (``projection_from``): by then the unconditional
run drew every hairstyle but the ponytail (0 % of samples, 6 % of renders; the pixel loss's
median leaves out tails whose place it cannot pin down), which a conditional D penalises.
Resumable: ``--hours H`` stops at an atomic checkpoint, rerunning continues; the state counts
the training seconds of every session (``--export`` records them as ``cpu_hours``). ``--pack``
copies the run's state (``checkpoint.pack_checkpoint``: one safetensors file per network and
optimiser) and its log to ``PACKED``, which git keeps; a fresh checkout with no run folder
resumes from there. ``python -m hairlib.mini.build stylegan2`` stages the run's generator as it
ships (``trained_generator``: the EMA weights, the mapping fitted to the final codes) with its
measured quality; a fresh build folder starts from the packed state (``--hours 0``: stage it
without training on).

``--stage warm`` is how the shipped generator was made: an autoencoder (an encoder maps renders
to w, the synthesis decodes them; ``DIR/warmstart_ae/``) and the mapping network fitted to the
encoder's codes by sliced Wasserstein (``DIR/warmstart_map/``), giving ``DIR/warm_G.pt``
(``ARCH``: 64 channels up to 32 px, 32 at 64 px, 4 mapping layers). ``--stage all`` adds the
plain adversarial stage after it (``hairlib.train.gan``). ``--export`` writes
``hairlib/mini/weights/stylegan2.safetensors`` and its ``.json``.
"""
from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Optional, Tuple

import torch

from hairlib.mini.data import RenderBatches, stream
from hairlib.mini import render as R
from hairlib.mini.prior import features_from_z
from hairlib.mini.shipping import WEIGHTS_DIR, save_shipped
from hairlib.mini.world import classifier_features, load_classifier, perceptual_features
from hairlib.nets.mini_nets import Encoder, EncoderConfig
from hairlib.nets.stylegan2 import Generator, StyleGAN2Config
from hairlib.train import warmstart as W
from hairlib.train.checkpoint import load_checkpoint, pack_checkpoint, save_atomic, stop_on_signals, unpack_checkpoint
from hairlib.train.gan import GANTrainConfig, train_gan
from hairlib.train.paired_gan import CodeNetwork, PairedGANConfig, fit_mapping, train_paired_gan
from hairlib.train.warmstart import WarmStartConfig

ARCH = StyleGAN2Config(size=64, style_dim=128, n_mlp=4, channel_multiplier=0.125, channel_max=64)
CONFIG = GANTrainConfig(arch=ARCH, batch=16, steps=60_000, lr=0.001, r1=0.5, ema_kimg=5.0, seed=2026,
                        ckpt_every=250, sample_every=500, log_every=25)
WARMSTART = WarmStartConfig(seed=2026, map_steps=3000, map_lr=0.1)
ENCODER_WIDTHS = (32, 64, 128, 128)  # the warm start's encoder (images -> w)
DEFAULT_OUT = Path("runs") / "mini_stylegan2"
PACKED = Path("results") / "training" / "mini_stylegan2" / "paired"  # the paired run's state and log, in git

# The paired recipe: G(z) = render(face(z)) (hairlib.mini.prior), sharpened by the discriminator.
PAIRED_ARCH = StyleGAN2Config(size=64, style_dim=128, n_mlp=4, channel_multiplier=0.25, channel_max=128, lr_mlp=1.0)
PAIRED = PairedGANConfig(arch=PAIRED_ARCH, batch=16, steps=200_000, lr=0.002, pair_weight=10.0, adv_weight=1.0,
                         r1=0.5, mixing=0.25, ema_kimg=5.0, seed=2030, ckpt_every=250, sample_every=1000,
                         anchor_layers=4, anchor_batch=256, anchor_lr=0.01, projection_from=7227)
PAIR_FEATURES = 1.0  # weight of the classifier-trunk features (mini LPIPS) beside pixel L1 in the paired loss


def pair_loss(classifier, features: float = PAIR_FEATURES):
    """(fake, real) [N, 3, 64, 64] -> [N]: mean |fake - real| plus ``features`` x the mean squared
    distance of the shipped classifier trunk's unit-normalised features (``perceptual_features``)."""
    feats = perceptual_features(classifier, normalized=1.0, raw=0.0)

    def loss(fake, real):
        per = (fake - real).abs().flatten(1).mean(1)
        if features:
            with torch.no_grad():
                target = feats(real)
            for f, t in zip(feats(fake)[::2], target[::2]):
                per = per + features * (f.float() - t.float()).pow(2).flatten(1).mean(1)
        return per
    return loss


def pack(out: Path, packed: Path = PACKED) -> Path:
    """The run's state and log (and its latest samples) -> ``packed``, for git."""
    state = load_checkpoint(out / "state.pt")
    if state is None:
        raise FileNotFoundError(f"no training state in {out}")
    packed.mkdir(parents=True, exist_ok=True)
    pack_checkpoint(state, packed / "state")
    shutil.copyfile(out / "log.jsonl", packed / "log.jsonl")
    samples = sorted(out.glob("samples_*.png"))
    if samples:
        shutil.copyfile(samples[-1], packed / "samples.png")
    return packed


def unpack(out: Path, packed: Path = PACKED) -> bool:
    """A run folder without a state starts from the packed one, if any (True if it did)."""
    if (out / "state.pt").exists():
        return False
    state = unpack_checkpoint(packed / "state")
    if state is None:
        return False
    out.mkdir(parents=True, exist_ok=True)
    save_atomic(state, out / "state.pt")
    if (packed / "log.jsonl").exists() and not (out / "log.jsonl").exists():
        shutil.copyfile(packed / "log.jsonl", out / "log.jsonl")
    print(f"resuming from the packed state in {packed} (step {state['step']})")
    return True


def train_paired(out: Path, cfg: PairedGANConfig = PAIRED, *, device="cpu", hours: float = None, workers: int = 0,
                 progress: bool = True, execution=None, packed: Optional[Path] = None, classifier=None):
    """The paired recipe in ``out`` (resumable; a fresh ``out`` starts from ``packed``'s state if
    given); returns (EMA generator, step). ``classifier``: the pair loss's (default: the shipped one)."""
    from hairlib.mini.data import PairedRenders

    out = Path(out)
    if packed is not None:
        unpack(out, packed)
    state = load_checkpoint(out / "state.pt")
    start = int(state["step"]) if state is not None else 0
    pairs = stream(PairedRenders(cfg.batch, cfg.seed, cfg.arch.style_dim, cfg.arch.size), start, workers)
    clf = (classifier if classifier is not None else load_classifier()).to(device).requires_grad_(False)
    return train_paired_gan(cfg, pairs, pair_loss(clf), out, device=device, progress=progress,
                            max_seconds=None if hours is None else hours * 3600, execution=execution,
                            features=features_from_z,
                            on_sample=lambda G, step: save_samples(G, step, out))


def render_sampler(size: int, seed: int = CONFIG.seed, start: int = 0, workers: int = 0):
    """(batch, torch.Generator) -> renders [N, 3, size, size] in [-1, 1] of the training split.

    Batch k of a run is a pure function of (seed, k) (``hairlib.mini.data``), so a run resumed at
    step ``start`` sees the batches it would have seen; ``workers`` processes render ahead (GPU
    runs, where one core cannot render fast enough)."""
    batches, size_of = None, {}

    def sample(batch: int, gen: torch.Generator) -> torch.Tensor:
        nonlocal batches
        if batches is None:
            batches, size_of["batch"] = stream(RenderBatches(batch, seed, size=size), start, workers), batch
        if batch != size_of["batch"]:
            raise ValueError(f"render_sampler serves batches of {size_of['batch']}, asked for {batch}")
        return next(batches)["images"]
    return sample


def save_samples(G, step: int, out_dir: Path, prefix: str = "samples") -> None:
    from PIL import Image

    with torch.no_grad():
        z = torch.randn(32, G.style_dim, generator=torch.Generator().manual_seed(0)).to(G.input.input.device)
        img = G(z, space="z", truncation=0.7).clamp(-1, 1)
    grid = ((img.cpu() + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    n, h, w, _ = grid.shape
    grid = grid.reshape(4, 8, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(4 * h, 8 * w, 3)
    Image.fromarray(grid).save(out_dir / f"{prefix}_{step:06d}.png")


def export(out_dir: Path, dest: Path = WEIGHTS_DIR, source: str = "gan", metrics: dict = None) -> Path:
    """The EMA generator of ``out_dir/state.pt`` (``source="gan"``) or the warm-start generator of
    ``out_dir/warm_G.pt`` (``"warm"``) -> ``dest/stylegan2.safetensors`` + ``.json``."""
    if source == "warm":
        state = load_checkpoint(Path(out_dir) / "warm_G.pt")
        if state is None:
            raise FileNotFoundError(f"no warm-start generator in {out_dir}")
        G = Generator(ARCH)
        G.load_state_dict(state["G"])
        meta = {"arch": ARCH.to_dict(), "warmstart": state["warmstart"], "stage": "warm start (autoencoder + mapping)"}
    else:
        G, meta = trained_generator(out_dir, source)
    stage = "--stage paired " if source == "paired" else ""
    meta.update({"command": f"python -m hairlib.mini.train_stylegan2 {stage}&& python -m hairlib.mini.train_stylegan2 "
                            f"--export {source}", "metrics": metrics if metrics is not None else meta.get("metrics", {})})
    return save_shipped("stylegan2", G, meta, dest)


def trained_generator(out_dir: Path, stage: str = "paired") -> Tuple[Generator, dict]:
    """The EMA generator of ``out_dir/state.pt`` as it ships (an anchored run's mapping fitted to
    its code network's final codes) and its metadata (arch, training config, step, CPU hours)."""
    state = load_checkpoint(Path(out_dir) / "state.pt")
    if state is None:
        raise FileNotFoundError(f"no training state in {out_dir}")
    G = Generator(StyleGAN2Config.from_dict(state["config"]["arch"]))
    G.load_state_dict(state["G_ema"])
    meta = {"arch": state["config"]["arch"], "train": state["config"], "step": state["step"], "stage": stage,
            "cpu_hours": round(float(state.get("seconds", 0.0)) / 3600, 2)}
    if "A" in state:  # anchored: the mapping is fitted to the final codes before it ships
        meta["mapping_fit"] = fit_final_mapping(G, state)
    return G.eval().requires_grad_(False), meta


MAPPING_FIT = {"steps": 20_000, "batch": 512, "lr": 0.01, "bank": 200_000, "seed": 2032}


def fit_final_mapping(G: Generator, state: dict, progress: bool = True) -> dict:
    """The anchored run's mapping fitted (in ``G``) to its code network's final codes
    (``paired_gan.fit_mapping`` with ``MAPPING_FIT``); returns the fit's numbers (R2 ...)."""
    cfg = PairedGANConfig.from_dict(state["config"])
    A = CodeNetwork(R.PARAM_FEATURES, cfg.arch.style_dim, cfg.anchor_layers)
    A.load_state_dict(state["A"])
    fit = fit_mapping(G, A, features_from_z, progress=progress, **MAPPING_FIT)
    print(f"mapping fitted to the codes: R2 {fit['r2']:.3f}")
    return fit


def warm_start(out: Path, device="cpu", progress: bool = True, cfg: WarmStartConfig = WARMSTART):
    """Stages 1 and 2; returns the warm generator's state dict (cached in ``out/warm_G.pt``)."""
    done = load_checkpoint(out / "warm_G.pt")
    if done is not None:
        return done["G"]
    torch.manual_seed(cfg.seed)
    G = Generator(ARCH)
    E = Encoder(EncoderConfig(1, ARCH.style_dim, ENCODER_WIDTHS, ARCH.size))
    renders = RenderBatches(cfg.batch, cfg.seed, size=ARCH.size)
    held = RenderBatches(cfg.batch, cfg.seed + 1, split="heldout", size=ARCH.size)
    sample = lambda k: renders[k]["images"] if k >= 0 else held[0]["images"]  # noqa: E731
    clf = load_classifier(device=device).requires_grad_(False)
    W.train_autoencoder(G, E, sample, classifier_features(clf), cfg, out / "warmstart_ae", device=device,
                        progress=progress)
    bank = W.encode_bank(E, sample, cfg.map_bank, device=device)
    W.fit_mapping(G, bank, cfg, out / "warmstart_map", device=device, progress=progress)
    save_samples(G.eval(), 0, out, "warm")
    save_atomic({"G": G.state_dict(), "warmstart": cfg.to_dict()}, out / "warm_G.pt")
    return G.state_dict()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="run folder (state.pt, log.jsonl, samples)")
    p.add_argument("--steps", type=int, default=None, help="total steps (resumes count on)")
    p.add_argument("--hours", type=float, default=None, help="stop the GAN stage (and checkpoint) after this wall time")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--workers", type=int, default=0, help="render in this many extra processes (GPU runs)")
    p.add_argument("--stage", choices=("paired", "warm", "all"), default="paired",
                   help="paired: G(z) = render(face(z)) sharpened by D (run folder DIR/paired); warm: the "
                        "autoencoder warm start (the shipped generator's); all: warm start, then the plain GAN")
    p.add_argument("--pack", action="store_true", help=f"only copy the paired run's state and log to {PACKED} (git)")
    p.add_argument("--export", choices=("paired", "gan", "warm"), default=None,
                   help="only export for shipping: the paired or GAN stage's EMA generator, or the warm start's")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)

    stop_on_signals()  # `kill PID` checkpoints and stops
    paired_out = out / "paired" if args.out == str(DEFAULT_OUT) else out
    if args.pack:
        print(f"packed into {pack(paired_out)}")
        return 0
    if args.export:
        print(f"wrote {export(paired_out if args.export == 'paired' else out, source=args.export)}")
        return 0
    if args.stage == "paired":
        train_paired(paired_out, replace(PAIRED, steps=args.steps or PAIRED.steps), device=args.device,
                     hours=args.hours, workers=args.workers, packed=PACKED if paired_out == DEFAULT_OUT / "paired" else None)
        return 0
    import time

    t0 = time.time()
    init = warm_start(out, args.device)
    if args.stage == "warm":
        return 0
    cfg = replace(CONFIG, steps=args.steps or CONFIG.steps)

    state = load_checkpoint(out / "state.pt")
    sampler = render_sampler(ARCH.size, cfg.seed, int(state["step"]) if state else 0, args.workers)
    left = None if args.hours is None else args.hours * 3600 - (time.time() - t0)
    train_gan(cfg, sampler, out, device=args.device, max_seconds=left, init=init,
              on_sample=lambda G, step: save_samples(G, step, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
