"""Recipe: the mini world's ManiCLIP editor, and the paper's ablation.

    python -m hairlib.mini.train_maniclip [--steps N] [--threads 2]            # ships weights/maniclip.safetensors
    python -m hairlib.mini.train_maniclip --stage no-entropy|no-groups         # the ablation (not shipped)

``MAIN`` is the mini world's ManiCLIP settings (``hairlib.methods.settings.MINI.maniclip``): the
authors' losses, weights, optimiser and group sampling, 3 000 steps of 16 faces, the mini CLIP's
normalised input. The ablation stages leave out one part each, as the paper's Table 3:
``no-entropy`` the entropy loss, ``no-groups`` group sampling (whole captions of random faces
instead). Each run is resumable (``runs/mini_maniclip[_STAGE]``); the shipped run's log is
copied to ``results/training/mini_maniclip/``. Every editor is scored the same way, on held-out
3-attribute sentences over the 64 validation faces (``VAL_SEED``; ``hairlib eval --sentences``
uses other faces).
"""
from __future__ import annotations

import copy
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import hairlib
from hairlib.evaluate import evaluate_sentences
from hairlib.methods.maniclip import save_maniclip, train_maniclip
from hairlib.methods.settings import MINI
from hairlib.mini.shipping import WEIGHTS_DIR, recipe_main, record_sha256

RUNS = Path("runs") / "mini_maniclip"
LOGS = Path(__file__).resolve().parents[2] / "results" / "training" / "mini_maniclip"
MAIN = MINI.maniclip
STAGES = {"no-entropy": replace(MAIN, entropy_lambda=0.0), "no-groups": replace(MAIN, decouple=False)}
VAL_SEED = 777  # the validation faces (hairlib eval's are seed 1234)
COMMAND = "python -m hairlib.mini.train_maniclip"


def run(cfg, args):
    world = hairlib.load_world("mini")
    editor = train_maniclip(world, cfg, args.out)
    row = evaluate_sentences(world, "maniclip", n=64, ks=(3,), seed=VAL_SEED, editor=editor)[0]
    editor.run_dir = Path(args.out)
    return editor, {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}


def export(editor, metrics, cfg):
    """The main recipe ships (fp16, sha256 recorded, its log kept in results/); an ablation
    stage's editor stays in its run folder for ``hairlib eval --sentences --editor``."""
    stage = next((k for k, v in STAGES.items() if replace(cfg, steps=v.steps) == v), "main")
    shipped = stage == "main"
    dest = (WEIGHTS_DIR if shipped else editor.run_dir) / "maniclip.safetensors"
    save_maniclip(copy.deepcopy(editor).half() if shipped else editor, dest,
                  extra={"recipe": asdict(cfg), "stage": stage, "scores": metrics, "scores_seed": VAL_SEED,
                         "command": COMMAND + ("" if shipped else f" --stage {stage}")})
    if shipped:
        record_sha256(dest)
        LOGS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(editor.run_dir / "log.jsonl", LOGS / "log.jsonl")
    return dest


def main(argv=None) -> int:
    return recipe_main(argv, doc=__doc__, default_out=RUNS, recipe=MAIN, run=run, export=export, stages=STAGES)


if __name__ == "__main__":
    raise SystemExit(main())
