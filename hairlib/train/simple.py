"""A small supervised training loop shared by the mini world's recipes.

``fit`` runs ``steps`` optimisation steps with a cosine learning-rate decay, a tqdm bar, a
JSON-lines log and an atomic, resumable checkpoint (model, optimiser, step and an optional
torch.Generator's state) written every ``ckpt_every`` steps and when interrupted. With a
``Parallel`` of several processes (``accelerate launch``) gradients are averaged across them and
only the main process writes.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
from torch import nn

from hairlib.train.checkpoint import append_log, load_checkpoint, save_atomic
from hairlib.train.parallel import Parallel

__all__ = ["fit"]


# settings a run may change when it is resumed (train on to more steps, log more often)
RESUMABLE = frozenset({"steps", "ckpt_every", "log_every"})


def _flat(meta: Dict[str, Any], prefix: str = "") -> Dict[str, str]:
    """A run's metadata as dotted key -> JSON text, without the ``RESUMABLE`` settings."""
    import json

    out = {}
    for k, v in meta.items():
        if k in RESUMABLE:
            continue
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True, default=str)
    return out


def fit(model: nn.Module, opt: torch.optim.Optimizer, *, steps: int, lr: Optional[float],
        loss_fn: Callable[[int], torch.Tensor], out_dir, ckpt_every: int = 250, log_every: int = 25,
        gen: Optional[torch.Generator] = None, meta: Optional[Dict[str, Any]] = None,
        desc: str = "train", progress: bool = True, schedule: str = "cosine",
        log_fn: Optional[Callable[[], Dict[str, float]]] = None, parallel=None) -> int:
    """Train ``model`` until ``steps``; ``loss_fn(step)`` builds step ``step``'s batch and returns
    its loss. Resumes from ``out_dir/state.pt`` (refused if its ``meta`` differs from this run's,
    but for ``RESUMABLE`` settings); returns the step reached. ``schedule``:
    "cosine" (decay to 0) or "constant"; ``log_fn()`` adds fields to each log line. ``parallel``
    (``hairlib.train.parallel.Parallel``): data parallelism; ``gen`` must then draw this
    process's own batches (seed it by rank)."""
    par = parallel or Parallel(enabled=False)
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    out_dir = Path(out_dir)
    step = 0
    state = load_checkpoint(out_dir / "state.pt")
    if state is not None and meta and state.get("meta"):
        differ = sorted(k for k in set(_flat(meta)) | set(_flat(state["meta"]))
                        if _flat(meta).get(k) != _flat(state["meta"]).get(k))
        if differ:
            raise ValueError(f"{out_dir / 'state.pt'} holds a run with other settings ({', '.join(differ[:6])}"
                             f"{', ...' if len(differ) > 6 else ''}): rerun it with those to resume it, or give "
                             "this run another folder (or delete that state.pt to start over)")
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        if gen is not None and len(state.get("rngs", ())) == par.num:
            gen.set_state(state["rngs"][par.rank])
        elif gen is not None and "rng" in state:
            gen.set_state(state["rng"])
            if par.rank:  # written by a run with another number of processes: new streams
                gen.manual_seed(1_000_003 * par.rank + step)

    def checkpoint():
        rngs = par.gather(gen.get_state()) if gen is not None else None  # every process takes part
        if not par.is_main:
            return
        extra = {"rng": rngs[0], **({"rngs": rngs} if par.num > 1 else {})} if rngs else {}
        save_atomic({"meta": meta or {}, "model": model.state_dict(), "opt": opt.state_dict(), "step": step, **extra},
                    out_dir / "state.pt")

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=step, desc=desc, disable=not (progress and par.is_main), dynamic_ncols=True)
    model.train()
    t0 = time.time()
    try:
        while step < steps:
            for g in opt.param_groups:
                base = g.setdefault("initial_lr", g["lr"]) if lr is None else lr  # None: each group's own rate
                g["lr"] = base * 0.5 * (1 + math.cos(math.pi * step / steps)) if schedule == "cosine" else base
            loss = loss_fn(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            par.average_gradients(model)
            opt.step()
            step += 1
            bar.update(1)
            if step % log_every == 0 and par.is_main:
                bar.set_postfix(loss=f"{loss.item():.3f}")
                extra = {k: round(float(v), 5) for k, v in (log_fn() if log_fn else {}).items()}
                append_log(out_dir / "log.jsonl", {"step": step, "loss": round(loss.item(), 5),
                                                   "time": round(time.time() - t0, 1), **extra})
            if step % ckpt_every == 0:
                checkpoint()
    finally:
        checkpoint()
        bar.close()
        par.wait()
    model.eval()
    return step
