"""Recipe: the mini world's face parser (hair / face / background masks of generated images).

    python -m hairlib.mini.train_parser [--steps N] [--out DIR] [--threads T]

Renders come with exact masks, generated images do not: HairCLIP's background and hair-colour
losses, and the "PSNR outside the hair" metric, need masks of generator output. A small U-Net
(``MiniParser``) learns them from renders of the training split (cross-entropy over
background / face / hair), with light augmentation toward generator output (blur, noise,
colour jitter) so that it transfers. Resumable (atomic ``DIR/state.pt``). Evaluated by IoU per
class on renders of held-out combinations. Ships ``parser.safetensors`` + ``parser.json``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from hairlib.mini import render as R
from hairlib.mini.shipping import WEIGHTS_DIR, recipe_main, save_shipped
from hairlib.nets.mini_nets import PARSER_CLASSES, MiniParser, ParserConfig
from hairlib.train.simple import fit

DEFAULT_OUT = Path("runs") / "mini_parser"


@dataclass(frozen=True)
class Recipe:
    steps: int = 1000  # optimisation steps
    batch: int = 16  # renders per step
    lr: float = 3e-3  # AdamW, cosine decay
    weight_decay: float = 1e-4
    seed: int = 17
    ckpt_every: int = 250
    eval_n: int = 500  # held-out renders for IoU


RECIPE = Recipe()


def labelled(n: int, rng: np.random.Generator, split: str = "train") -> Tuple[torch.Tensor, torch.Tensor]:
    """n renders [n, 3, 64, 64] in [-1, 1] and their label maps [n, 64, 64] (PARSER_CLASSES ids)."""
    images, masks, _ = R.render_batch(R.sample_params(rng, n=n, split=split))
    y = np.zeros(masks["hair"].shape, np.int64)
    y[masks["face"]] = PARSER_CLASSES.index("face")
    y[masks["hair"]] = PARSER_CLASSES.index("hair")
    return R.to_tensor(images), torch.from_numpy(y)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur, noise and colour jitter, per image, toward what a small generator produces."""
    n = x.shape[0]
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None]) / 16
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3).contiguous(), groups=3)
    amount = torch.rand(n, 1, 1, 1, generator=gen)
    x = x + amount * (blurred - x)
    x = x * (1 + 0.1 * torch.randn(n, 3, 1, 1, generator=gen)) + 0.05 * torch.randn(n, 3, 1, 1, generator=gen)
    x = x + 0.04 * torch.rand(n, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    return x.clamp(-1, 1)


def train(cfg: Recipe = RECIPE, out_dir=DEFAULT_OUT, *, progress: bool = True) -> MiniParser:
    torch.manual_seed(cfg.seed)
    model = MiniParser(ParserConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)

    def loss_fn(step: int) -> torch.Tensor:
        x, y = labelled(cfg.batch, np.random.default_rng([cfg.seed, step]))
        return F.cross_entropy(model(augment(x, gen)), y)

    fit(model, opt, steps=cfg.steps, lr=cfg.lr, loss_fn=loss_fn, out_dir=out_dir, ckpt_every=cfg.ckpt_every, gen=gen,
        meta={"recipe": asdict(cfg)}, desc="train parser", progress=progress)
    return model.eval()


@torch.no_grad()
def evaluate(model: MiniParser, n: int = RECIPE.eval_n, seed: int = 777) -> Dict[str, float]:
    """IoU per class and pixel accuracy on renders of held-out combinations."""
    model.eval()
    x, y = labelled(n, np.random.default_rng(seed), split="heldout")
    pred = torch.cat([model(x[i:i + 100]).argmax(1) for i in range(0, n, 100)])
    out = {}
    for i, name in enumerate(PARSER_CLASSES):
        inter = ((pred == i) & (y == i)).sum().item()
        union = ((pred == i) | (y == i)).sum().item()
        out[f"iou_{name}"] = inter / max(union, 1)
    out["pixel_acc"] = float((pred == y).float().mean())
    return out


def export(model: MiniParser, metrics: dict, cfg: Recipe = RECIPE, dest: Path = WEIGHTS_DIR) -> Path:
    return save_shipped("parser", model, {"config": model.config.to_dict(), "classes": list(PARSER_CLASSES),
                                          "recipe": asdict(cfg), "step": cfg.steps, "metrics": metrics,
                                          "command": "python -m hairlib.mini.train_parser"}, dest)


def main(argv=None) -> int:
    def run(cfg, args):
        model = train(cfg, args.out)
        return model, evaluate(model)

    return recipe_main(argv, doc=__doc__, default_out=DEFAULT_OUT, recipe=RECIPE, run=run, export=export)


if __name__ == "__main__":
    raise SystemExit(main())
