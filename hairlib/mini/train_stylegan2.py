"""Recipe: the mini world's StyleGAN2, trained on renders of the mini renderer.

    python -m hairlib.mini.train_stylegan2 [--hours H] [--device cuda] [--out DIR] [--threads T]

Three stages, each resumable (rerun the same command: it continues where it stopped):
1. ``ae``: autoencoder warm start (``hairlib.train.warmstart``): an encoder maps renders to w,
   the synthesis network decodes them; L1 + the shipped classifier's trunk features.
   ``DIR/warmstart_ae/state.pt``.
2. ``map``: the mapping network fitted to the encoder's codes of fresh renders (sliced
   Wasserstein). ``DIR/warmstart_map/state.pt``.
3. ``gan``: adversarial fine-tuning from there (non-saturating loss, lazy R1, path length,
   EMA, mixing: ``hairlib.train.gan``). ``DIR/state.pt``. On the CPU budget it lost diversity
   within 1000 steps, so the shipped generator does not come from it.
4. ``sharpen`` (``--stage sharpen``): from the shipped warm generator, the synthesis network
   is fine-tuned against a fresh discriminator while reconstructing renders through the
   shipped (frozen) W+ encoder, VQGAN-style (``hairlib.train.sharpen``); the mapping stays
   frozen, so the encoder and the edit networks trained on this W+ space stay valid.
   ``DIR/sharpen/state.pt``; ``--export sharpen`` ships its EMA generator. Not shipped: on two
   CPU cores (1000 steps, 30 min) the samples grew dark smears across the eyes and KID (500
   samples) went from 0.64 to 0.72 at step 500 (``DIR/sharpen/log.jsonl``, ``samples_001000.png``).
5. ``remap`` (``--stage remap``): the shipped synthesis network frozen, a one-w encoder (started
   from the shipped W+ encoder, its rows averaged) is refitted to it, and the mapping network
   is refitted (sliced Wasserstein, as stage 2) to that encoder's codes of fresh renders
   (``hairlib.train.warmstart.train_w_encoder``). The synthesis and so W+ do not change.
   Why: the shipped generator's *reconstructions* of renders are far closer to the renders
   than its *samples* (KID in the classifier's features, 1000 renders: W+ encoder
   reconstructions 0.17, a first one-w encoder's 0.19, samples 0.66; gray hair on 19 % of
   reconstructions and on 55 % of samples, 19 % of renders). The synthesis can draw the
   renders; what falls short is the sampler, the mapping network fitted to the warm start's codes.
   ``DIR/remap/``; ``--export remap`` ships its generator. Measured (CPU, 2 threads, 7 min;
   ``runs/mini_stylegan2/remap/``): 2000 samples' KID 0.66 -> 0.46, label values within 5
   points of the renderer's 30 -> 40 %, the worst gap 45 -> 30 points (glasses). The sliced
   Wasserstein fit is now the limit: its samples sit at 0.46 while the codes it was fitted to
   decode to 0.19 (in a first try on another bank, a W-space GAN with an MLP critic reached
   0.42 where sliced Wasserstein reached 0.45, on 1000 samples; fitting on from here, 6000 more
   steps or 3000 at batch 4096, levels off at 0.40-0.41). Not shipped: on the new
   sampler's faces every method keeps fewer of the other labels (64 faces; HairCLIP's 6 edits
   83 -> 77 %, the optimisation 75 -> 70 %: the old sampler's faces carried fewer attributes
   to lose) and the edit networks, trained on the old sampler's faces, lose identity (HairCLIP
   0.87 -> 0.75, mappers 0.84 -> 0.78; success about the same). The afro mapper retrained on
   the new faces reaches 86 % success, identity 0.79 (``runs/mini_stylegan2/remap/eval/``):
   shipping this stage means retraining the edit networks with it.
6. ``distill`` (``--stage distill``): the shipped synthesis frozen, the mapping network is
   fitted to the renderer's own law instead of to a distribution of codes. ``hairlib.mini.prior``
   makes every z stand for one face: the CDFs of PixelNorm(z)'s first 56 coordinates are exact
   uniforms, and ``render.params_from_uniforms`` draws each field of ``FaceParams`` from its own
   slots with the train split's exact law (categorical fields by a binary tree, one yes/no slot
   per level; the fields that held-out combinations tie, by the chain rule of their joint law,
   so nothing is rejected). A bank of 131 072 z, the render of each z's face and the one-w
   encoder's code of that render (stage 5's encoder, ``DIR/distill/bank.pt``, 8 min) is the
   training set; the re-initialised mapping is fitted by MSE (60 000 steps of 1024, 8 min;
   Adam with each layer's equalised-lr scale divided out and the first layer 30x faster, since
   it must cut z into the renderer's steps; each batch re-draws the directions of the unread z
   coordinates, so the mapping ignores them). ``DIR/distill/``; ``--export distill``.
   Measured (CPU, 2 threads; 2000 samples): KID 0.66 -> 0.24, label values within 5 points of
   the renderer's 30 -> 70 %, worst gap eye colour blue (2 % of samples, 30 % of renders: the
   one-w encoder's reconstructions keep eye colour on 50 % of renders, so no fit to its codes
   can do better); a sample G(z) and the render of z's face agree on 80 % of labels (21.5 dB).
   Why the tree: fitted by MSE, one number cut into 12 hairstyles was learnt to 68 % by a small
   mapping where a 4-level tree of yes/no slots reached 89 % (a toy, 2000 steps each). The
   first try (one number per field, split=None with held-out rows dropped, 32 768 pairs, 6000
   steps) reached KID 0.31 on 1000 samples. Not shipped yet: on its faces every edit network
   scores lower, fine-tuned to them (``train_mappers adapt``: HairCLIP's 6 edits 59 -> 47 %,
   identity 0.87 -> 0.80) or, for the afro mapper, retrained from scratch (84 -> 57 %): its
   faces carry the renderer's attributes, so there is more to keep and the hair is harder to
   move (``runs/mini_stylegan2/distill/eval/``). Shipping it means retraining the edit networks
   and restating every edit table.
The warm start exists because this recipe had to run on two CPU cores: trained as a plain GAN
from scratch, 2 200 steps (75 min) gave blobs, and 60 000 steps would take a day.
``--export`` writes the EMA generator to ``hairlib/mini/weights/stylegan2.safetensors``
(+ ``stylegan2.json``, its config and provenance) for shipping. The data set is infinite:
every batch is freshly rendered from the training split (held-out combinations never appear).

Architecture (``ARCH``): 64 px, W+ of 10 rows of 128, 4 mapping layers, 64 channels up to
32 px and 32 at 64 px; R1 gamma 0.5 (small images want a small gamma; StyleGAN2-ADA uses
0.01-1 at 32-64 px).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hairlib.mini.shipping import WEIGHTS_DIR, save_shipped
from hairlib.mini.world import load_net
from hairlib.nets.stylegan2 import StyleGAN2Config
from hairlib.train.gan import GANTrainConfig, train_gan
from hairlib.train.sharpen import SharpenConfig
from hairlib.train.warmstart import WarmStartConfig

ARCH = StyleGAN2Config(size=64, style_dim=128, n_mlp=4, channel_multiplier=0.125, channel_max=64)
CONFIG = GANTrainConfig(arch=ARCH, batch=16, steps=60_000, lr=0.001, r1=0.5, ema_kimg=5.0, seed=2026,
                        ckpt_every=250, sample_every=500, log_every=25)
WARMSTART = WarmStartConfig(seed=2026, map_steps=3000, map_lr=0.1)
SHARPEN = SharpenConfig(steps=3000, batch=16, samples=8, seed=2027)


@dataclass(frozen=True)
class RemapConfig:
    encoder_steps: int = 400  # one-w encoder steps against the frozen synthesis (PSNR flat after ~200)
    batch: int = 16  # renders per encoder step
    encoder_lr: float = 3e-4  # Adam, constant
    feature_weight: float = 0.5  # classifier-trunk feature MSE beside L1 pixels
    seed: int = 2031  # training-split batches of the encoder; seed + 1: its held-out log batch
    mapping: WarmStartConfig = WarmStartConfig(seed=2032, map_steps=3000, map_batch=1024, map_bank=8192,
                                               map_lr=0.1, projections=256)
    eval_n: int = 2000  # samples (and renders) of the before/after evaluation

    def to_dict(self) -> dict:
        return asdict(self)


REMAP = RemapConfig()


@dataclass(frozen=True)
class DistillConfig:
    # the one-w encoder: RemapConfig's (same settings and seeds: the same encoder)
    encoder_steps: int = REMAP.encoder_steps
    batch: int = REMAP.batch
    encoder_lr: float = REMAP.encoder_lr
    feature_weight: float = REMAP.feature_weight
    seed: int = REMAP.seed
    # the bank: z ~ N(0, I), the render of params_from_z(z), the encoder's code of that render
    bank: int = 131_072  # (z, w) pairs, rendered in chunks of 1024 (chunk k from seed bank_seed * 100_003 + k)
    bank_seed: int = 2033
    held: int = 2048  # the bank's first rows: held out of the fit, its log's relative error
    # the fit: the mapping network re-initialised, then MSE(mapping(z), w); Adam, cosine decay
    map_steps: int = 60_000  # held-out relative error 0.13 at 20 000 steps, 0.08 at 60 000 (KID 0.27 -> 0.24)
    map_batch: int = 1024
    map_lr: float = 3e-3  # effective rate of each layer (the equalised-lr scale divided out)
    first_layer_mult: float = 30.0  # the first layer learns 30x faster: it must cut z into the renderer's steps
    eval_n: int = 2000  # samples (and renders) of the before/after evaluation

    def to_dict(self) -> dict:
        return asdict(self)


DISTILL = DistillConfig()
ENCODER_WIDTHS = (32, 64, 128, 128)  # the warm start's encoder (images -> w)
DEFAULT_OUT = Path("runs") / "mini_stylegan2"


def render_sampler(size: int, seed: int = CONFIG.seed, start: int = 0, workers: int = 0):
    """(batch, torch.Generator) -> renders [N, 3, size, size] in [-1, 1] of the training split.

    Batch k of a run is a pure function of (seed, k) (``hairlib.mini.data``), so a run resumed at
    step ``start`` sees the batches it would have seen; ``workers`` processes render ahead (GPU
    runs, where one core cannot render fast enough)."""
    from hairlib.mini.data import RenderBatches, stream

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
    """The EMA generator of ``out_dir/state.pt`` (``source="gan"``), of the sharpening stage's
    ``out_dir/sharpen/state.pt`` (``"sharpen"``) or the warm-start generator of
    ``out_dir/warm_G.pt`` (``"warm"``) -> ``dest/stylegan2.safetensors`` + ``.json``."""
    from hairlib.nets.stylegan2 import Generator
    from hairlib.train.checkpoint import load_checkpoint

    if source == "sharpen":
        state = load_checkpoint(Path(out_dir) / "sharpen" / "state.pt")
        if state is None:
            raise FileNotFoundError(f"no sharpening state in {Path(out_dir) / 'sharpen'}")
        G = Generator(ARCH)
        ema = dict(state["G_ema"])
        ema.update({k: v for k, v in state["G"].items() if k.startswith("style.")})  # the frozen mapping, exactly
        G.load_state_dict(ema)
        meta = {"arch": ARCH.to_dict(), "sharpen": state["config"], "step": state["step"],
                "stage": "warm start (autoencoder + mapping), then sharpened (reconstruction-anchored GAN)"}
        warm = load_checkpoint(Path(out_dir) / "warm_G.pt")
        meta["warmstart"] = warm["warmstart"] if warm else WARMSTART.to_dict()
    elif source in ("remap", "distill"):
        state = load_checkpoint(Path(out_dir) / source / "G.pt")
        if state is None:
            raise FileNotFoundError(f"no {source} generator in {Path(out_dir) / source} (run --stage {source})")
        G = Generator(ARCH)
        G.load_state_dict(state["G"])
        meta = dict(state["meta"])
    elif source == "warm":
        state = load_checkpoint(Path(out_dir) / "warm_G.pt")
        if state is None:
            raise FileNotFoundError(f"no warm-start generator in {out_dir}")
        G = Generator(ARCH)
        G.load_state_dict(state["G"])
        meta = {"arch": ARCH.to_dict(), "warmstart": state["warmstart"], "stage": "warm start (autoencoder + mapping)"}
    else:
        state = load_checkpoint(Path(out_dir) / "state.pt")
        if state is None:
            raise FileNotFoundError(f"no training state in {out_dir}")
        G = Generator(StyleGAN2Config.from_dict(state["config"]["arch"]))
        G.load_state_dict(state["G_ema"])
        meta = {"arch": state["config"]["arch"], "train": state["config"], "step": state["step"], "stage": "gan"}
    stage = f" --stage {source}" if source in ("sharpen", "remap", "distill") else ""
    meta.update({"command": f"python -m hairlib.mini.train_stylegan2{stage} && python -m hairlib.mini.train_stylegan2 "
                            f"--export {source}", "metrics": metrics if metrics is not None else meta.get("metrics", {})})
    return save_shipped("stylegan2", G, meta, dest)


def warm_start(out: Path, device="cpu", progress: bool = True, cfg: WarmStartConfig = WARMSTART):
    """Stages 1 and 2; returns the warm generator's state dict (cached in ``out/warm_G.pt``)."""
    from hairlib.mini.data import RenderBatches
    from hairlib.mini.world import load_classifier
    from hairlib.mini.world import classifier_features
    from hairlib.nets.mini_nets import Encoder, EncoderConfig
    from hairlib.nets.stylegan2 import Generator
    from hairlib.train import warmstart as W
    from hairlib.train.checkpoint import load_checkpoint, save_atomic

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


def sharpen_shipped(out: Path, device="cpu", progress: bool = True, cfg: SharpenConfig = SHARPEN,
                    max_seconds=None, steps=None, dest: Path = WEIGHTS_DIR):
    """Stage 4: sharpen the generator shipped in ``dest`` (the warm start's) against a fresh
    discriminator, anchored by reconstructions through the shipped encoder; the shipped files
    are only read, so an interrupted or restarted run starts from the same point."""
    from dataclasses import replace

    from hairlib.mini.data import RenderBatches
    from hairlib.mini.world import load_encoder
    from hairlib.nets.stylegan2 import Discriminator
    from hairlib.nets.stylegan2 import Generator
    from hairlib.train.sharpen import sharpen

    if steps is not None:
        cfg = replace(cfg, steps=steps)
    G, meta = load_net("stylegan2", lambda m: Generator(StyleGAN2Config.from_dict(m["arch"])), dest, device)
    G.train().requires_grad_(True)
    resuming = any((Path(out) / f).exists() for f in ("state.pt", "state.pt.prev"))  # sharpen() loads it
    if not resuming and "sharpen" in meta:
        raise ValueError(f"the generator in {dest} is already sharpened; export the warm start first "
                         "(--export warm) or resume an existing run folder")
    torch.manual_seed(cfg.seed)
    D = Discriminator(ARCH)
    enc = load_encoder(dest, device)
    renders = RenderBatches(cfg.batch, cfg.seed, size=ARCH.size)
    held = RenderBatches(32, cfg.seed + 1, split="heldout", size=ARCH.size)[0]["images"]
    return sharpen(G, D, enc, lambda k: renders[k]["images"], cfg, out, device=device, progress=progress,
                   max_seconds=max_seconds, held=held, on_sample=lambda g, s: save_samples(g, s, Path(out)))


def remap_shipped(out: Path, device="cpu", progress: bool = True, cfg: RemapConfig = REMAP,
                  dest: Path = WEIGHTS_DIR) -> dict:
    """Stage 5: refit the shipped generator's mapping network (its synthesis frozen) to a
    one-w encoder's codes of fresh renders; writes ``out/G.pt`` and returns its evaluation
    (KID and attribute frequencies, ``hairlib.mini.eval_stylegan2``) beside the shipped one's.
    The shipped files are only read; each step resumes (``out/encoder``, ``out/map``)."""
    from hairlib.mini.data import RenderBatches
    from hairlib.mini.eval_stylegan2 import evaluate_generator
    from hairlib.train import warmstart as W
    from hairlib.train.checkpoint import load_checkpoint, save_atomic

    out = Path(out)
    done = load_checkpoint(out / "G.pt")
    if done is not None:
        return done["meta"]["metrics"]
    G, meta, clf, before, E = _shipped_for_refit(out, cfg, device, progress, dest)
    renders = RenderBatches(cfg.batch, cfg.seed, size=ARCH.size)
    bank = W.encode_bank(E, lambda k: renders[k]["images"], cfg.mapping.map_bank, device=device)
    G.style.requires_grad_(True)
    W.fit_mapping(G, bank, cfg.mapping, out / "map", device=device, progress=progress)
    G.eval().requires_grad_(False)
    metrics = evaluate_generator(G, clf, n=cfg.eval_n)
    new_meta = {k: v for k, v in meta.items() if k not in ("metrics", "command", "exported")}
    new_meta.update({"remap": cfg.to_dict(), "metrics": _summary(metrics), "before_remap": _summary(before),
                     "stage": meta.get("stage", "") + ", then the mapping refitted (remap)"})
    save_atomic({"G": G.state_dict(), "meta": new_meta}, out / "G.pt")
    return new_meta["metrics"]


def _shipped_for_refit(out: Path, cfg, device, progress: bool, dest: Path):
    """What the mapping refits (remap, distill) start from: the shipped generator (refused if its
    mapping was refitted already), its metadata, the shipped classifier, the generator's
    evaluation before its mapping moves, and the one-w encoder fitted to it (``out/encoder``)."""
    from hairlib.mini.eval_stylegan2 import evaluate_generator
    from hairlib.mini.world import load_classifier
    from hairlib.nets.stylegan2 import Generator

    G, meta = load_net("stylegan2", lambda m: Generator(StyleGAN2Config.from_dict(m["arch"])), dest, device)
    if "remap" in meta or "distill" in meta:
        raise ValueError(f"the generator in {dest} has a refitted mapping already; start from the one it came from")
    clf = load_classifier(dest, device).requires_grad_(False)
    before = evaluate_generator(G, clf, n=cfg.eval_n)
    return G, meta, clf, before, _one_w_encoder(G, clf, cfg, out / "encoder", device, progress, dest)


def _summary(m: dict) -> dict:
    return {k: m[k] for k in ("kid_samples_vs_renders", "kid_renders_vs_renders", "within_5_points",
                              "max_frequency_gap", "n") if k in m}


def _one_w_encoder(G, clf, cfg, out: Path, device, progress: bool, dest: Path):
    """A one-w encoder fitted to G's frozen synthesis (``train_w_encoder``), started from the
    shipped W+ encoder with its rows averaged; ``cfg``: the ``encoder_*``, ``batch``,
    ``feature_weight`` and ``seed`` fields of RemapConfig / DistillConfig. Resumes in ``out``."""
    from hairlib.mini.data import RenderBatches
    from hairlib.mini.world import classifier_features, load_encoder
    from hairlib.nets.mini_nets import Encoder, EncoderConfig
    from hairlib.train import warmstart as W

    wplus = load_encoder(dest, device)
    c = wplus.config
    E = Encoder(EncoderConfig(1, c.style_dim, c.widths, c.image_size), wplus.latent_avg).to(device)
    E.trunk.load_state_dict(wplus.trunk.state_dict())
    with torch.no_grad():  # start at the mean of the W+ encoder's rows
        E.head.weight.copy_(wplus.head.weight.view(c.num_ws, c.style_dim, -1).mean(0))
        E.head.bias.copy_(wplus.head.bias.view(c.num_ws, c.style_dim).mean(0))
    renders = RenderBatches(cfg.batch, cfg.seed, size=ARCH.size)
    held = RenderBatches(64, cfg.seed + 1, split="heldout", size=ARCH.size)[0]["images"]
    W.train_w_encoder(G, E, lambda k: renders[k]["images"], classifier_features(clf), steps=cfg.encoder_steps,
                      lr=cfg.encoder_lr, feature_weight=cfg.feature_weight, out_dir=out, device=device,
                      progress=progress, held=held)
    return E.eval()


_BANK_FIELDS = ("encoder_steps", "batch", "encoder_lr", "feature_weight", "seed", "bank", "bank_seed")


@torch.no_grad()
def prior_bank(E, cfg: DistillConfig, out: Path, device="cpu", progress: bool = True):
    """(z [bank, d], w [bank, d]): z ~ N(0, I) and the encoder's code of the render of
    ``prior.params_from_z(z)``. Chunk k (1024 rows) is a pure function of (bank_seed, k);
    finished chunks are kept in ``out/bank.pt`` (written atomically), so an interrupted run
    resumes at the chunk it was on."""
    from tqdm.auto import tqdm

    from hairlib.mini import render as R
    from hairlib.mini.prior import params_from_z
    from hairlib.train.checkpoint import load_checkpoint, save_atomic

    chunk, n_chunks = 1024, -(-cfg.bank // 1024)
    key = {k: v for k, v in cfg.to_dict().items() if k in _BANK_FIELDS}
    state = load_checkpoint(out / "bank.pt") or {"z": [], "w": [], "config": key}
    if state["config"] != key:
        raise ValueError(f"{out / 'bank.pt'} was built with another encoder or bank config; move it away to rebuild")
    E = E.to(device).eval()
    bar = tqdm(total=n_chunks, initial=len(state["z"]), desc="prior bank", disable=not progress)
    while len(state["z"]) < n_chunks:
        k = len(state["z"])
        z = torch.randn(chunk, ARCH.style_dim, generator=torch.Generator().manual_seed(cfg.bank_seed * 100_003 + k))
        images, _, _ = R.render_batch(params_from_z(z, split="train"), size=ARCH.size)
        state["z"].append(z)
        state["w"].append(E(R.to_tensor(images).to(device)).reshape(chunk, -1).cpu())
        bar.update(1)
        if len(state["z"]) % 16 == 0 or len(state["z"]) == n_chunks:
            save_atomic(state, out / "bank.pt")
    bar.close()
    return torch.cat(state["z"])[:cfg.bank], torch.cat(state["w"])[:cfg.bank]


def fit_mapping_to_prior(G, z: torch.Tensor, w: torch.Tensor, cfg: DistillConfig, out: Path, device="cpu",
                         progress: bool = True) -> int:
    """Re-initialise ``G.style`` and fit it by MSE so that ``G.mapping(z) ~ w`` on the bank
    (rows ``cfg.held`` onward; the first ``cfg.held`` give the log's ``held_rel``, the held-out
    error relative to the codes' variance). Each batch re-draws the directions of the z
    coordinates that ``params_from_z`` does not read (the same face, another z), so the mapping
    learns to ignore them. Resumable (``out/state.pt``)."""
    from hairlib.mini import render as R
    from hairlib.mini.prior import pixel_norm
    from hairlib.nets.stylegan2 import EqualLinear
    from hairlib.train.simple import fit

    G = G.to(device)
    torch.manual_seed(cfg.seed)
    layers = [m for m in G.style if isinstance(m, EqualLinear)]
    groups = []
    for i, m in enumerate(layers):
        with torch.no_grad():
            m.weight.copy_(torch.randn_like(m.weight) / m.lr_mul)
            m.bias.zero_()
        k = cfg.first_layer_mult if i == 0 else 1.0  # Adam's steps in the raw weights, per effective unit:
        groups += [{"params": [m.weight], "lr": k * cfg.map_lr * m.weight.shape[1] ** 0.5 / m.lr_mul},
                   {"params": [m.bias], "lr": k * cfg.map_lr / m.lr_mul}]
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99))
    G.style.requires_grad_(True)
    z, w = z.to(device), w.to(device)
    scale = w[cfg.held:].var(0).mean()
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    slots = R.PRIOR_SLOTS

    def same_faces(zb: torch.Tensor) -> torch.Tensor:
        zh = pixel_norm(zb)
        tail = zh[:, slots:]
        r = torch.randn(tail.shape, generator=gen).to(device)
        return torch.cat([zh[:, :slots], r * (tail.norm(dim=1, keepdim=True) / r.norm(dim=1, keepdim=True))], 1)

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(cfg.held, z.shape[0], (cfg.map_batch,), generator=gen).to(device)
        return (G.mapping(same_faces(z[idx])) - w[idx]).pow(2).mean() / scale

    def log_fn():
        with torch.no_grad():
            return {"held_rel": ((G.mapping(z[:cfg.held]) - w[:cfg.held]).pow(2).mean() / scale).item()}

    step = fit(G.style, opt, steps=cfg.map_steps, lr=None, loss_fn=loss_fn, out_dir=out, gen=gen, log_fn=log_fn,
               log_every=250, ckpt_every=1000, meta={"distill": cfg.to_dict()}, desc="fit mapping to prior",
               progress=progress)
    G.style.requires_grad_(False)
    G.set_latent_avg(G.mean_latent())
    return step


def distill_shipped(out: Path, device="cpu", progress: bool = True, cfg: DistillConfig = DISTILL,
                    dest: Path = WEIGHTS_DIR) -> dict:
    """Stage 6: the shipped synthesis frozen, its mapping network fitted to the renderer's prior
    (``hairlib.mini.prior``): G(z) is taught the encoder's code of the render of
    ``params_from_z(z)``. Writes ``out/G.pt`` and returns its evaluation beside the shipped
    generator's. The shipped files are only read; every step resumes."""
    from hairlib.mini.eval_stylegan2 import evaluate_generator, own_render_agreement
    from hairlib.train.checkpoint import load_checkpoint, save_atomic

    out = Path(out)
    done = load_checkpoint(out / "G.pt")
    if done is not None:
        return done["meta"]["metrics"]
    G, meta, clf, before, E = _shipped_for_refit(out, cfg, device, progress, dest)
    z, w = prior_bank(E, cfg, out, device, progress)
    fit_mapping_to_prior(G, z, w, cfg, out / "map", device, progress)
    G.eval().requires_grad_(False)
    metrics = {**_summary(evaluate_generator(G, clf, n=cfg.eval_n)), "own_render": own_render_agreement(G, clf)}
    new_meta = {k: v for k, v in meta.items() if k not in ("metrics", "command", "exported")}
    new_meta.update({"distill": cfg.to_dict(), "metrics": metrics, "before_distill": _summary(before),
                     "stage": meta.get("stage", "") + ", then the mapping fitted to the renderer's prior (distill)"})
    save_atomic({"G": G.state_dict(), "meta": new_meta}, out / "G.pt")
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="run folder (state.pt, log.jsonl, samples)")
    p.add_argument("--steps", type=int, default=CONFIG.steps, help="total GAN steps (resumes count)")
    p.add_argument("--hours", type=float, default=None, help="stop the GAN stage (and checkpoint) after this wall time")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--workers", type=int, default=0, help="render in this many extra processes (GPU runs)")
    p.add_argument("--stage", choices=("warm", "all", "sharpen", "remap", "distill"), default="all",
                   help="stop after the warm start, go on to the GAN stage, sharpen the shipped generator, "
                        "or refit its mapping network (to codes' distribution: remap; to the renderer's prior: distill)")
    p.add_argument("--export", choices=("gan", "warm", "sharpen", "remap", "distill"), default=None,
                   help="only export for shipping: the GAN stage's EMA generator, the warm start's, the sharpened "
                        "one, the remapped or the distilled one")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    from hairlib.train.checkpoint import stop_on_signals

    stop_on_signals()  # `kill PID` checkpoints and stops
    if args.export:
        print(f"wrote {export(out, source=args.export)}")
        return 0
    from dataclasses import replace

    import time

    t0 = time.time()
    if args.stage in ("remap", "distill"):
        import json

        run = remap_shipped if args.stage == "remap" else distill_shipped
        print(json.dumps(run(out / args.stage, args.device), indent=1))
        return 0
    if args.stage == "sharpen":
        sharpen_shipped(out / "sharpen", args.device, max_seconds=None if args.hours is None else args.hours * 3600,
                        steps=args.steps if args.steps != CONFIG.steps else SHARPEN.steps)
        return 0
    init = warm_start(out, args.device)
    if args.stage == "warm":
        return 0
    cfg = replace(CONFIG, steps=args.steps)
    from hairlib.train.checkpoint import load_checkpoint

    state = load_checkpoint(out / "state.pt")
    sampler = render_sampler(ARCH.size, cfg.seed, int(state["step"]) if state else 0, args.workers)
    left = None if args.hours is None else args.hours * 3600 - (time.time() - t0)
    train_gan(cfg, sampler, out, device=args.device, max_seconds=left, init=init,
              on_sample=lambda G, step: save_samples(G, step, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
