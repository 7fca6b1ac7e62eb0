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

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

from hairlib.nets.mini_nets import AttributeClassifier, ClassifierConfig, multi_label_loss
from hairlib.train.checkpoint import append_log, load_checkpoint, save_atomic

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
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
    from hairlib.mini import render as R

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


def train(cfg: Recipe = RECIPE, out_dir=DEFAULT_OUT, *, progress: bool = True) -> AttributeClassifier:
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    model = AttributeClassifier(ClassifierConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    state = load_checkpoint(out_dir / "state.pt")
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["rng"])
        step = int(state["step"])

    def checkpoint():
        save_atomic({"recipe": asdict(cfg), "model": model.state_dict(), "opt": opt.state_dict(),
                     "rng": gen.get_state(), "step": step}, out_dir / "state.pt")

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc="train classifier", disable=not progress, dynamic_ncols=True)
    model.train()
    t0 = time.time()
    try:
        while step < cfg.steps:
            rng = np.random.default_rng([cfg.seed, step])  # the batch of step k is always the same
            x, y = render_labelled(cfg.batch, rng)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            loss = multi_label_loss(model(augment(x, cfg, gen)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            if step % 25 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
                append_log(out_dir / "log.jsonl", {"step": step, "loss": round(loss.item(), 5),
                                                   "time": round(time.time() - t0, 1)})
            if step % cfg.ckpt_every == 0:
                checkpoint()
    finally:
        checkpoint()
        bar.close()
    return model.eval()


def evaluate(model: AttributeClassifier, n: int = RECIPE.eval_n, seed: int = 12345) -> Dict[str, Dict[str, float]]:
    """Accuracy per label on fresh training-split renders and on held-out combinations."""
    out = {}
    for split in ("train", "heldout"):
        x, y = render_labelled(n, np.random.default_rng([seed, split == "heldout"]), split=split)
        out[split] = accuracy(model, x, y)
    return out


def export(model: AttributeClassifier, metrics: dict, step: int, dest: Path = WEIGHTS_DIR) -> Path:
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / "classifier.safetensors.part"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(dest / "classifier.safetensors")
    meta = {"config": model.config.to_dict(), "recipe": asdict(RECIPE), "step": step, "accuracy": metrics,
            "command": "python -m hairlib.mini.train_classifier", "exported": time.strftime("%Y-%m-%d %H:%M")}
    (dest / "classifier.json").write_text(json.dumps(meta, indent=2))
    return dest / "classifier.safetensors"


def load_shipped_classifier(dest: Path = WEIGHTS_DIR, device="cpu") -> AttributeClassifier:
    """The shipped classifier, eval mode, frozen."""
    from safetensors.torch import load_file

    from hairlib.nets.loading import load_state_dict_strict

    meta = json.loads((dest / "classifier.json").read_text())
    model = AttributeClassifier(ClassifierConfig.from_dict(meta["config"]))
    load_state_dict_strict(model, load_file(str(dest / "classifier.safetensors")), what=str(dest / "classifier.safetensors"))
    return model.to(device).eval().requires_grad_(False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--steps", type=int, default=RECIPE.steps)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-export", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from dataclasses import replace

    model = train(replace(RECIPE, steps=args.steps), args.out)
    metrics = evaluate(model)
    for split, acc in metrics.items():
        print(split, " ".join(f"{k}={v:.3f}" for k, v in acc.items()))
    append_log(Path(args.out) / "log.jsonl", {"eval": metrics})
    if not args.no_export:
        print(f"wrote {export(model, metrics, args.steps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
