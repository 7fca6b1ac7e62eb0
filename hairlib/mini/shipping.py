"""Writing the mini world's weights (recipes' side): ``<name>.safetensors`` + ``<name>.json``.

The JSON beside each file holds the network's config (enough to rebuild it), the recipe that
produced it, its measured quality and when it was exported; ``hairlib.mini.world`` reads them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from torch import nn

from hairlib.atomic import atomic_path, sha256_file, write_text
from hairlib.mini.world import WEIGHTS_DIR
from hairlib.train.checkpoint import append_log, stop_on_signals

__all__ = ["WEIGHTS_DIR", "save_shipped", "record_sha256"]


def save_shipped(name: str, model: nn.Module, meta: Dict[str, Any], dest: Path = WEIGHTS_DIR) -> Path:
    """Write ``model``'s state dict (atomically) and ``meta`` (+ export time and the file's
    sha256, which loading checks) as ``name``."""
    from safetensors.torch import save_file

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest / f"{name}.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    meta = dict(meta, exported=time.strftime("%Y-%m-%d %H:%M"), sha256=sha256_file(dest / f"{name}.safetensors"))
    write_text(dest / f"{name}.json", json.dumps(meta, indent=2))
    return dest / f"{name}.safetensors"


def record_sha256(path: Path) -> Path:
    """Record a shipped file's sha256 in the ``.json`` beside it (created if absent), which
    ``load_safetensors`` checks at load; for files exported by ``save_with_meta`` (mappers)."""
    sidecar = Path(path).with_suffix(".json")
    meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    meta["sha256"] = sha256_file(path)
    write_text(sidecar, json.dumps(meta, indent=2))
    return sidecar


def _format_metrics(metrics: Dict[str, Any], prefix: str = "") -> str:
    """One line of ``name=value`` per level of nesting, each nested dict on its own line(s) under
    its key path ("heldout_by_combination earrings beard=yes,earrings=yes=0.000 ...")."""
    flat = " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if not isinstance(v, dict))
    lines = [prefix + flat] if flat else []
    for k, v in metrics.items():
        if isinstance(v, dict):
            lines.append(_format_metrics(v, f"{prefix}{k} "))
    return "\n".join(line for line in lines if line)


def stage_dir(default_out, stage: str) -> Path:
    """Where ``--stage NAME`` runs unless ``--out`` says: ``<default_out>_NAME`` (its state.pt is
    what a later stage's ``init`` names)."""
    return Path(f"{default_out}_{stage}")


def recipe_main(argv, *, doc: str, default_out, recipe, run: Callable, export: Callable,
                device: bool = False, workers: bool = False, stages: Optional[Dict[str, Any]] = None) -> int:
    """The command line every mini recipe shares: parse ``--out --steps --threads [--device]
    [--workers] --no-export``; ``run(cfg, args) -> (model, metrics)`` trains and evaluates with
    ``cfg = replace(recipe, steps=--steps)``; the metrics are printed and logged, and
    ``export(model, metrics, cfg)`` ships the weights unless ``--no-export``. ``stages``: other
    recipes, chosen by ``--stage NAME`` (their run folder defaults to ``<default_out>_NAME``)."""
    import argparse
    from dataclasses import replace

    import torch

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", default=str(default_out), help="run folder (state.pt, log.jsonl)")
    p.add_argument("--steps", type=int, default=None, help="total steps (a resumed run counts on)")
    if stages:
        p.add_argument("--stage", choices=["main", *stages], default="main", help="which recipe to run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    if device:
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    if workers:
        p.add_argument("--workers", type=int, default=0, help="render in this many extra processes")
    p.add_argument("--no-export", action="store_true", help="train and evaluate only")
    args = p.parse_args(argv)
    stage = getattr(args, "stage", "main")
    if stage != "main":
        recipe = stages[stage]
        if args.out == str(default_out):
            args.out = str(stage_dir(default_out, stage))
    if args.threads:
        torch.set_num_threads(args.threads)

    stop_on_signals()  # `kill PID` checkpoints and stops; rerun to resume
    cfg = replace(recipe, steps=args.steps or recipe.steps)
    model, metrics = run(cfg, args)
    print(_format_metrics(metrics))
    append_log(Path(args.out) / "log.jsonl", {"eval": metrics})
    if not args.no_export:
        print(f"wrote {export(model, metrics, cfg)}")
    return 0
