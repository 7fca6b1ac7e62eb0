"""Recipe: the mini world's encoder to W+ (e4e's role), for inverting renders.

    python -m hairlib.mini.train_encoder [--steps N] [--out DIR] [--threads T] [--device cuda]
    python -m hairlib.mini.train_encoder figure    # results/mini_inversion.png from the shipped weights

Needs the shipped mini StyleGAN2 (frozen); the build (``python -m hairlib.mini.build encoder``)
trains from scratch (``init=""``). Each step mixes two kinds of examples:
* generator samples, whose W+ is known (truncation 0.5-1, half of them style-mixed): latent
  MSE plus pixel MSE of the reconstruction;
* fresh renders of the training split (the images it must invert): pixel MSE plus a
  perceptual term in the attribute classifier's trunk features (shipped classifier, frozen),
  and, for a paired generator, W+ MSE to the code of the face each render shows (the render of
  ``prior.params_from_z(z)`` against ``G.mapping(z)``: ``render_code_weight``).
Resumable (atomic ``DIR/state.pt``). The synthesis runs in bf16 on a CPU with AMX-BF16
(``ops.frozen_autocast``). Evaluated on 200 renders of held-out combinations, encoder alone and
encoder + ``hairlib.invert`` refinement: PSNR and the classifier's labels kept. Ships
``encoder.safetensors`` + ``encoder.json``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

import hairlib
from hairlib import ops
from hairlib.invert import InvertConfig, invert
from hairlib.mini import render as R
from hairlib.mini.prior import params_from_z
from hairlib.mini.shipping import WEIGHTS_DIR, recipe_main, save_shipped
from hairlib.mini.world import INVERT, classifier_features, load_classifier, load_generator, perceptual_features
from hairlib.nets.mini_nets import Encoder, EncoderConfig
from hairlib.train.checkpoint import load_checkpoint
from hairlib.train.simple import fit
from hairlib.viz import grid

DEFAULT_OUT = Path("runs") / "mini_encoder"


@dataclass(frozen=True)
class Recipe:
    steps: int = 1500  # optimisation steps
    batch: int = 16  # half generator samples, half renders
    lr: float = 1e-3  # AdamW, cosine decay
    latent_weight: float = 1.0  # W+ MSE on generator samples
    pixel_weight: float = 1.0  # image MSE
    feature_weight: float = 0.5  # classifier-trunk feature MSE on renders
    # W+ MSE on renders to the code of the face they show: renders of ``prior.params_from_z(z)``
    # for fresh z, whose code is ``G.mapping(z)`` (a paired generator's mapping is fitted to the
    # codes of the faces z stands for); 0: renders of ``render.sample_params``, pixels only
    render_code_weight: float = 1.0
    seed: int = 5
    ckpt_every: int = 250
    eval_n: int = 200
    widths: tuple = (32, 64, 128, 128)  # trunk (the StyleGAN2 warm start's encoder)
    init: str = "runs/mini_stylegan2/warmstart_ae/state.pt"  # start from the warm start's encoder ("" for none)


RECIPE = Recipe()



def init_from_warmstart(enc: Encoder, path) -> None:
    """Copy the warm start's encoder (images -> one w) into ``enc`` (images -> W+): same trunk,
    head rows tiled, bias shifted by ``enc.latent_avg`` so that every row starts at that w."""
    sd = {k[2:]: v for k, v in load_checkpoint(path)["model"].items() if k.startswith("E.")}
    rows = enc.config.num_ws
    if sd["head.weight"].shape[0] * rows != enc.head.weight.shape[0] or sd["head.weight"].shape[1] != enc.head.weight.shape[1]:
        raise ValueError(f"{path}: its encoder ({tuple(sd['head.weight'].shape)} head) does not fit this generator's "
                         f"W+ ({rows} x {enc.config.style_dim}); pass init='' to start from scratch")
    with torch.no_grad():
        enc.trunk.load_state_dict({k[len("trunk."):]: v for k, v in sd.items() if k.startswith("trunk.")})
        enc.head.weight.copy_(sd["head.weight"].repeat(rows, 1))
        enc.head.bias.copy_(sd["head.bias"].repeat(rows) - enc.latent_avg.reshape(-1).repeat(rows))


def train(G, classifier, cfg: Recipe = RECIPE, out_dir=DEFAULT_OUT, *, device="cpu", progress=True) -> Encoder:
    if cfg.render_code_weight and G.style_dim < R.PRIOR_SLOTS:
        raise ValueError(f"render_code_weight needs a generator whose z stands for a face (style_dim >= "
                         f"{R.PRIOR_SLOTS}, the paired recipe's); this one's is {G.style_dim}: pass render_code_weight=0")
    torch.manual_seed(cfg.seed)
    G = G.to(device).eval().requires_grad_(False)
    feats = classifier_features(classifier.to(device).eval().requires_grad_(False))
    enc = Encoder(EncoderConfig(G.num_ws, G.style_dim, tuple(cfg.widths), image_size=G.size), G.get_latent_avg())
    if cfg.init and Path(cfg.init).exists() and not (Path(out_dir) / "state.pt").exists():
        init_from_warmstart(enc, cfg.init)
    enc = enc.to(device)
    opt = torch.optim.AdamW(enc.parameters(), lr=cfg.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed)
    half = cfg.batch // 2

    def synthesis(wplus):  # bf16 on a CPU with AMX-BF16 (``ops.frozen_autocast``); the losses stay fp32
        with ops.frozen_autocast(device):
            return G.synthesis(wplus).float()

    def loss_fn(step: int) -> torch.Tensor:
        with torch.no_grad():
            z = torch.randn(2 * half, G.style_dim, generator=gen).to(device)
            psi = (0.5 + 0.5 * torch.rand(half, 1, generator=gen)).to(device)
            w = G.truncate(G.mapping(z[:half]), psi)  # per-sample truncation
            w2 = G.mapping(z[half:])
            wplus = G.broadcast(w)
            k = int(torch.randint(1, G.num_ws, (), generator=gen))
            wplus[: half // 2, k:] = G.broadcast(w2[: half // 2])[:, k:]  # style mixing for a quarter
            fake = synthesis(wplus)
            if cfg.render_code_weight:  # the faces of fresh latents, whose codes G's mapping knows
                z_r = torch.randn(half, G.style_dim, generator=torch.Generator().manual_seed(
                    cfg.seed * 100_003 + step))
                params, code = params_from_z(z_r), G.broadcast(G.mapping(z_r.to(device)))
            else:
                params = R.sample_params(np.random.default_rng([cfg.seed, step]), n=half, split="train")
            renders = R.to_tensor(R.render_batch(params, size=G.size)[0]).to(device)
        pred_fake, pred_real = enc(fake), enc(renders)
        rec_fake, rec_real = synthesis(pred_fake), synthesis(pred_real)
        loss = cfg.latent_weight * F.mse_loss(pred_fake, wplus) + cfg.pixel_weight * (
            F.mse_loss(rec_fake, fake) + F.mse_loss(rec_real, renders))
        if cfg.render_code_weight:
            loss = loss + cfg.render_code_weight * F.mse_loss(pred_real, code)
        if cfg.feature_weight:
            loss = loss + cfg.feature_weight * sum(F.mse_loss(a, b) for a, b in zip(feats(rec_real), feats(renders)))
        return loss

    fit(enc, opt, steps=cfg.steps, lr=cfg.lr, loss_fn=loss_fn, out_dir=out_dir, ckpt_every=cfg.ckpt_every, gen=gen,
        meta={"recipe": asdict(cfg)}, desc="train encoder", progress=progress)
    return enc


@torch.no_grad()
def evaluate(G, enc, classifier, n: int = RECIPE.eval_n, seed: int = 4242,
             cfg: InvertConfig = INVERT) -> Dict[str, float]:
    """PSNR and labels kept on held-out renders: encoder alone, then encoder + ``cfg``'s
    refinement (the mini world's: ``INVERT``, with its perceptual features)."""
    images, _, _ = R.render_batch(R.sample_params(np.random.default_rng(seed), n=n, split="heldout"), size=G.size)
    x = R.to_tensor(images)
    truth = classifier.predict(x)
    out = {}
    for name, steps in (("encoder", 0), ("encoder+refine", cfg.steps)):
        with torch.enable_grad():
            res = invert(G, x, encoder=enc, cfg=replace(cfg, steps=steps), feature_net=perceptual_features(classifier))
        pred = classifier.predict(res.images)
        same = torch.stack([(pred[k] == truth[k]) for k in pred]).float()  # [labels, n]
        out[f"{name}_psnr"] = float(res.psnr.mean())
        out[f"{name}_all_labels_kept"] = float(same.min(0).values.mean())  # renders with every label kept
        out[f"{name}_each_label_kept"] = {k: float(v) for k, v in zip(pred, same.mean(1))}
        out[f"{name}_seconds_per_image"] = res.seconds / n
    return out


def figure(path=Path("results") / "mini_inversion.png", n: int = 10, seed: int = 4242) -> Path:
    """Held-out renders (the first ``n`` of ``evaluate``'s), the shipped encoder's reconstructions,
    and the mini world's refined ones (``World.invert``), each row labelled with its mean PSNR."""
    world = hairlib.load_world("mini")
    images, _, _ = R.render_batch(R.sample_params(np.random.default_rng(seed), n=n, split="heldout"), size=world.resolution)
    x = R.to_tensor(images)
    rows, labels = [x], ["held-out renders"]
    for steps, name in ((0, "encoder"), (world.invert_config.steps, f"+ {world.invert_config.steps} steps")):
        with torch.enable_grad():
            res = world.invert(x, steps=steps, full=True)
        rows.append(res.images)
        labels.append(f"{name}: {float(res.psnr.mean()):.1f} dB")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(rows, labels, scale=2).save(path)
    return path


def export(enc: Encoder, metrics: dict, cfg: Recipe = RECIPE, dest: Path = WEIGHTS_DIR) -> Path:
    """fp16 weights (loaded back as fp32): half the size, the same inversions (64 held-out renders:
    20.9196 dB in fp32 and in fp16, images within 0.003)."""
    import copy

    return save_shipped("encoder", copy.deepcopy(enc).half(), {
        "config": enc.config.to_dict(), "recipe": asdict(cfg), "step": cfg.steps, "metrics": metrics,
        "dtype": "float16", "command": "python -m hairlib.mini.train_encoder"}, dest)


def main(argv=None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["figure"]:  # python -m hairlib.mini.train_encoder figure: results/mini_inversion.png
        print(f"wrote {figure()}")
        return 0

    def run(cfg, args):
        G, clf = load_generator(), load_classifier()
        enc = train(G, clf, cfg, args.out, device=args.device).cpu()
        return enc, evaluate(G.cpu(), enc, clf.cpu())

    return recipe_main(argv, doc=__doc__, default_out=DEFAULT_OUT, recipe=RECIPE, run=run, export=export, device=True)


if __name__ == "__main__":
    raise SystemExit(main())
