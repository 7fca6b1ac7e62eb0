"""Recipe: the mini world's identity network (ArcFace's role: identity loss and similarity).

    python -m hairlib.mini.train_identity [--steps N] [--out DIR] [--threads T]

Each step samples ``batch`` people and renders each twice: the identity parameters
(``IDENTITY_FIELDS``) and gender fixed, everything else (hair, accessories, expression, age
cues, background, pose) re-sampled; a contrastive loss (NT-Xent) pulls the two views together
and pushes other people away. Resumable (atomic ``DIR/state.pt``). Evaluated on fresh people:
cosine similarity of a render and the same person with only the hair changed (what an editing
method must keep), with everything but identity changed, and of two different people; ships
``hairlib/mini/weights/identity.safetensors`` + ``identity.json``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

from hairlib.mini import render as R
from hairlib.mini.shipping import WEIGHTS_DIR, recipe_main, save_shipped
from hairlib.mini.vocab import HAIR_COLORS, HAIRSTYLES
from hairlib.nets.mini_nets import IdentityConfig, IdentityNet, nt_xent
from hairlib.train.simple import fit

DEFAULT_OUT = Path("runs") / "mini_identity"


@dataclass(frozen=True)
class Recipe:
    steps: int = 2000  # optimisation steps
    batch: int = 48  # people per step (two renders each)
    lr: float = 2e-3  # AdamW, cosine decay
    weight_decay: float = 1e-4
    temperature: float = 0.1  # NT-Xent temperature
    seed: int = 11
    ckpt_every: int = 250
    eval_n: int = 500  # people per evaluation


RECIPE = Recipe()


def same_person(p, rng: np.random.Generator, split: str = "train"):
    """Another render of the person in ``p``: identity fields and gender kept, the rest re-drawn."""
    q = R.sample_params(rng, split=split, gender=p.gender)
    return q.replace(**{f: getattr(p, f) for f in R.IDENTITY_FIELDS})


def view_pairs(n: int, rng: np.random.Generator, split: str = "train") -> Tuple[torch.Tensor, torch.Tensor]:
    """n people, two renders each -> ([n, 3, 64, 64], [n, 3, 64, 64]) in [-1, 1]."""
    a = R.sample_params(rng, n=n, split=split)
    b = [same_person(p, rng, split) for p in a]
    return R.to_tensor(R.render_batch(a)[0]), R.to_tensor(R.render_batch(b)[0])


def train(cfg: Recipe = RECIPE, out_dir=DEFAULT_OUT, *, progress: bool = True) -> IdentityNet:
    torch.manual_seed(cfg.seed)
    model = IdentityNet(IdentityConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def loss_fn(step: int) -> torch.Tensor:
        x1, x2 = view_pairs(cfg.batch, np.random.default_rng([cfg.seed, step]))
        return nt_xent(model(x1), model(x2), cfg.temperature)

    fit(model, opt, steps=cfg.steps, lr=cfg.lr, loss_fn=loss_fn, out_dir=out_dir, ckpt_every=cfg.ckpt_every,
        meta={"recipe": asdict(cfg)}, desc="train identity", progress=progress)
    return model


@torch.no_grad()
def evaluate(model: IdentityNet, n: int = RECIPE.eval_n, seed: int = 54321) -> Dict[str, float]:
    """Mean cosine similarity for: hair-only edits, all-but-identity changes, different people;
    and verification accuracy at the threshold halfway between the last two means."""
    model.eval()
    rng = np.random.default_rng(seed)
    a = R.sample_params(rng, n=n, split="heldout")
    hair = [p.replace(hair_color=int(rng.integers(len(HAIR_COLORS))), hairstyle=int(rng.integers(len(HAIRSTYLES))), hat=0)
            for p in a]
    other = [same_person(p, rng, "heldout") for p in a]
    strangers = R.sample_params(rng, n=n, split="heldout")
    emb = {k: model(R.to_tensor(R.render_batch(v)[0])) for k, v in
           {"a": a, "hair": hair, "other": other, "strangers": strangers}.items()}
    same_hair = (emb["a"] * emb["hair"]).sum(1)
    same_all = (emb["a"] * emb["other"]).sum(1)
    diff = (emb["a"] * emb["strangers"]).sum(1)
    thr = float((same_all.mean() + diff.mean()) / 2)
    acc = float(torch.cat([same_all > thr, diff <= thr]).float().mean())
    return {"hair_edit_sim": float(same_hair.mean()), "same_person_sim": float(same_all.mean()),
            "different_people_sim": float(diff.mean()), "verification_acc": acc, "threshold": thr}


def export(model: IdentityNet, metrics: dict, cfg: Recipe = RECIPE, dest: Path = WEIGHTS_DIR) -> Path:
    return save_shipped("identity", model, {"config": model.config.to_dict(), "recipe": asdict(cfg), "step": cfg.steps,
                                            "metrics": metrics, "command": "python -m hairlib.mini.train_identity"}, dest)


def main(argv=None) -> int:
    def run(cfg, args):
        model = train(cfg, args.out)
        return model, evaluate(model)

    return recipe_main(argv, doc=__doc__, default_out=DEFAULT_OUT, recipe=RECIPE, run=run, export=export)


if __name__ == "__main__":
    raise SystemExit(main())
