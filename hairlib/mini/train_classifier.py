"""Recipe: the mini world's attribute classifier (the CelebA classifier's role: evaluation).

    python -m hairlib.mini.train_classifier [--steps N] [--out DIR] [--threads T]

Trains ``AttributeClassifier`` on fresh renders of the training split (every batch newly
rendered: an infinite data set), with light noise and blur so that it also reads generator
output; resumable from ``DIR/state.pt`` (atomic); then measures per-label accuracy on 2 000
fresh training-split renders and 2 000 renders of the held-out attribute combinations, and
ships ``hairlib/mini/weights/classifier.safetensors`` + ``classifier.json`` (config, accuracy,
provenance).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

from hairlib.mini import render as R
from hairlib.mini.data import RenderBatches, stream
from hairlib.mini.shipping import WEIGHTS_DIR, recipe_main, save_shipped
from hairlib.nets.mini_nets import AttributeClassifier, ClassifierConfig, multi_label_loss
from hairlib.train.simple import fit

DEFAULT_OUT = Path("runs") / "mini_classifier"


@dataclass(frozen=True)
class Recipe:
    steps: int = 2500  # optimisation steps
    batch: int = 64  # renders per step
    lr: float = 2e-3  # AdamW, cosine decay to 0
    weight_decay: float = 1e-4
    noise: float = 0.04  # max std of added Gaussian noise (images in [-1, 1])
    blur_p: float = 0.3  # probability of a 3x3 box blur
    seed: int = 7
    ckpt_every: int = 250
    eval_n: int = 2000  # renders per evaluation split


RECIPE = Recipe()


def render_labelled(n: int, rng: np.random.Generator, split: str = "train"):
    """n fresh renders -> (images [n, 3, 64, 64] in [-1, 1], {label: int64 [n]})."""
    params = R.sample_params(rng, n=n, split=split)
    images, _, labels = R.render_batch(params)
    return R.to_tensor(images), {k: torch.as_tensor(v) for k, v in labels.items()}


def augment(x: torch.Tensor, cfg: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Light degradations that generator output shows: noise and slight blur."""
    n = x.shape[0]
    blur = torch.rand(n, generator=gen) < cfg.blur_p
    if blur.any():
        k = torch.ones(3, 1, 3, 3) / 9
        x = torch.where(blur[:, None, None, None], F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3), x)
    sigma = torch.rand(n, 1, 1, 1, generator=gen) * cfg.noise
    return (x + sigma * torch.randn(x.shape, generator=gen)).clamp(-1, 1)


@torch.no_grad()
def accuracy(model: AttributeClassifier, images: torch.Tensor, labels: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Per-label accuracy (labels -1 ignored)."""
    pred = model.predict(images)
    out = {}
    for name, p in pred.items():
        y = labels[name]
        keep = y >= 0
        out[name] = float((p[keep] == y[keep]).float().mean()) if keep.any() else float("nan")
    return out


def train(cfg: Recipe = RECIPE, out_dir=DEFAULT_OUT, *, workers: int = 0, progress: bool = True) -> AttributeClassifier:
    torch.manual_seed(cfg.seed)
    model = AttributeClassifier(ClassifierConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)  # augmentation noise

    data, batches = RenderBatches(cfg.batch, cfg.seed), None

    def loss_fn(step: int) -> torch.Tensor:
        nonlocal batches
        if batches is None:  # started (or resumed) at this step; batch k is always the same
            batches = stream(data, step, workers)
        item = next(batches)
        return multi_label_loss(model(augment(item["images"], cfg, gen)), item["labels"])

    fit(model, opt, steps=cfg.steps, lr=cfg.lr, loss_fn=loss_fn, out_dir=out_dir, ckpt_every=cfg.ckpt_every,
        gen=gen, meta={"recipe": asdict(cfg)}, desc="train classifier", progress=progress)
    return model


def evaluate(model: AttributeClassifier, n: int = RECIPE.eval_n, seed: int = 12345) -> Dict[str, Dict[str, float]]:
    """Accuracy per label on fresh training-split renders and on held-out combinations."""
    out = {}
    for split in ("train", "heldout"):
        x, y = render_labelled(n, np.random.default_rng([seed, split == "heldout"]), split=split)
        out[split] = accuracy(model, x, y)
    return out


def export(model: AttributeClassifier, metrics: dict, cfg: Recipe = RECIPE, dest: Path = WEIGHTS_DIR) -> Path:
    return save_shipped("classifier", model, {"config": model.config.to_dict(), "recipe": asdict(cfg), "step": cfg.steps,
                                              "accuracy": metrics, "command": "python -m hairlib.mini.train_classifier"}, dest)


def main(argv=None) -> int:
    def run(cfg, args):
        model = train(cfg, args.out, workers=args.workers)
        return model, evaluate(model)

    return recipe_main(argv, doc=__doc__, default_out=DEFAULT_OUT, recipe=RECIPE, run=run, export=export, workers=True)


if __name__ == "__main__":
    raise SystemExit(main())
