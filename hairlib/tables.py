"""The papers' comparison tables, ours beside theirs, as pandas DataFrames (notebook 07).

    runs = {m: evaluate(world, m, EDIT_TASKS, n=64) for m in ("optimize", "global", "mapper")}
    styleclip_table(runs, training=training_seconds(world, directions))

* ``styleclip_table``: StyleCLIP's comparison of its three methods (time per edit, training or
  pre-processing, and what a table of edits shows: success, others kept, identity); the paper's
  timings (``bench.PAPER_SECONDS``) beside ours.
* ``hairclip_table``: HairCLIP's quantitative comparison with StyleCLIP on the same hair edits:
  accuracy of the target attribute, identity, PSNR and SSIM outside the hair.
* ``maniclip_table``: ManiCLIP's table on sentences of several attributes: attribute accuracy,
  identity as the paper writes it (100 * mean cosine), an FID-style distance (KID of the mini
  classifier's features against renders, where FID is against FFHQ), latent spread.
* ``truth_table``: truth mode (``evaluate_truth``), which no paper has: each method's edits of
  inverted renders against the renders of their true answer.
* ``strength_sweep``: success, identity and PSNR outside the hair as an edit's strength grows.

The papers measure on CelebA-HQ faces with CelebA attribute classifiers; the mini world measures
the same quantities with its own classifier, identity net and parser. Where a world has no
attribute classifier (ffhq), the columns that need one are left empty.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from hairlib.results import duration, mean_of

__all__ = ["training_seconds", "styleclip_table", "hairclip_table", "maniclip_table", "truth_table", "strength_sweep",
           "STYLECLIP_NAMES", "PAPER_TRAINING"]

STYLECLIP_NAMES = {"optimize": "latent optimisation", "mapper": "latent mapper", "global": "global directions",
                   "hairclip": "HairCLIP", "maniclip": "ManiCLIP", "inversion": "inversion (no edit)"}
PAPER_TRAINING = {"optimize": "none", "mapper": "10-12 h a prompt", "global": "4 h once"}  # StyleCLIP, V100


def _pd():
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - pandas comes with the dev extra and Colab
        raise ImportError("the papers' tables are pandas DataFrames: pip install pandas") from e
    return pd


def training_seconds(world, directions=None) -> Dict[str, float]:
    """Our one-off cost per StyleCLIP method on ``world``: global directions' pre-processing (the
    statistics and relevance seconds ``directions`` recorded) and the mean training seconds of the
    world's shipped mappers (their ``.json`` lineage)."""
    import json
    from pathlib import Path

    out = {}
    if directions is not None and "seconds_relevance" in directions.meta:
        out["global"] = float(directions.meta.get("seconds_stats", 0.0)) + float(directions.meta["seconds_relevance"])
    secs = []
    for path in (getattr(world, "mappers", None) or {}).values():
        side = Path(path).with_suffix(".json")
        if side.exists():
            value = json.loads(side.read_text()).get("lineage", {}).get("seconds")
            secs += [float(value)] if isinstance(value, (int, float)) else []
    if secs:
        out["mapper"] = float(np.mean(secs))
    return out


def styleclip_table(runs: Dict[str, List[dict]], training: Optional[Dict[str, float]] = None):
    """StyleCLIP's three methods side by side. ``runs``: ``evaluate`` rows per method (the same
    faces and tasks); ``training``: our seconds of training or pre-processing per method (the
    mapper's training, global directions' statistics and relevance)."""
    from hairlib.bench import PAPER_SECONDS

    pd, training = _pd(), training or {}
    out = []
    for method in ("optimize", "global", "mapper"):
        rows = runs.get(method) or []
        if not rows:
            continue
        paper_pre = PAPER_TRAINING[method]
        out.append({"method": STYLECLIP_NAMES[method],
                    "time / edit (paper, GPU)": duration(PAPER_SECONDS[method]),
                    "time / edit (ours)": duration(mean_of(rows, "seconds")),
                    "training or pre-processing (paper)": paper_pre,
                    "training or pre-processing (ours)": "none" if method == "optimize" else duration(training.get(method)),
                    "edits": ", ".join(r["task"] for r in rows), "success": mean_of(rows, "success"),
                    "others kept": mean_of(rows, "preserved"), "identity": mean_of(rows, "identity")})
    return pd.DataFrame(out).set_index("method")


def hairclip_table(runs: Dict[str, List[dict]]):
    """HairCLIP against StyleCLIP's methods on the hair edits every method ran (its mapper: the
    prompts that have one): accuracy of the target attribute, identity, PSNR and SSIM outside the
    hair (the measures of HairCLIP's quantitative comparison), per method."""
    pd = _pd()
    hair = {r["task"] for r in runs.get("hairclip", [])}
    out = []
    for method in ("hairclip", "optimize", "global", "mapper"):
        rows = [r for r in runs.get(method) or [] if r["task"] in hair and not r.get("match")]
        if rows:
            out.append({"method": STYLECLIP_NAMES[method], "edits": ", ".join(r["task"] for r in rows),
                        "accuracy": mean_of(rows, "success"), "identity": mean_of(rows, "identity"),
                        "PSNR outside hair": mean_of(rows, "psnr_bg"), "SSIM outside hair": mean_of(rows, "ssim_bg"),
                        "others kept": mean_of(rows, "preserved")})
    columns = ["method", "edits", "accuracy", "identity", "PSNR outside hair", "SSIM outside hair", "others kept"]
    return pd.DataFrame(out, columns=columns).set_index("method")


def maniclip_table(runs: Dict[str, List[dict]]):
    """ManiCLIP's measures per method and number of stated attributes (``evaluate_sentences``
    rows): attribute accuracy, stated reached, unstated kept, identity (100 * mean cosine, the
    paper's form), the FID-style ``kid`` and the share of W+ entries moved (``spread``)."""
    pd = _pd()
    out = []
    for method, rows in runs.items():
        for r in rows:
            out.append({"method": STYLECLIP_NAMES.get(method, method), "attributes": int(r["attributes"]),
                        "accuracy": float(r.get("accuracy", "nan") or "nan"), "reached": float(r["reached"]),
                        "kept": float(r["kept"]), "identity (x100)": 100 * float(r["identity"]),
                        "KID to renders": float(r.get("kid", "nan") or "nan"),
                        "W+ spread": float(r["spread"]), "time / edit": duration(float(r["seconds"]))})
    return pd.DataFrame(out).set_index(["method", "attributes"])


def truth_table(rows: Sequence[dict]):
    """Truth-mode rows (``evaluate_truth``, any methods) as a DataFrame, one row per method and
    edit, with each method's mean over its edits after them."""
    pd = _pd()
    frame = pd.DataFrame([{**r, "method": STYLECLIP_NAMES.get(r["method"], r["method"])} for r in rows])
    numeric = [c for c in frame.columns if c not in ("method", "task", "n")]
    frame[numeric] = frame[numeric].astype(float)
    means = frame[frame["task"] != "-"].groupby("method", sort=False)[numeric].mean().reset_index()
    means["task"] = "mean"
    return pd.concat([frame, means], ignore_index=True).set_index(["method", "task"]).drop(columns="n")


def strength_sweep(world, method: str, task, values: Sequence[float], n: int = 16, seed: int = 1234, **kw):
    """One edit at several strengths (global directions: ``alpha``; mapper and HairCLIP:
    ``strength``, w + strength * M(w)) on the same ``n`` faces -> DataFrame of success (where the
    world has a classifier), identity and PSNR outside the hair per strength."""
    from hairlib.evaluate import evaluate

    pd = _pd()
    key = "alpha" if method == "global" else "strength"
    if method == "global" and "directions" not in kw:
        from hairlib.methods.global_dir import GlobalDirections

        kw["directions"] = GlobalDirections.for_world(world)
    out = []
    for v in values:
        rows = evaluate(world, method, [task], n=n, seed=seed, **{key: v}, **kw)
        if rows:
            r = rows[0]
            out.append({key: v, "success": r.get("success", float("nan")), "identity": r["identity"],
                        "PSNR outside hair": r.get("psnr_bg", float("nan"))})
    return pd.DataFrame(out).set_index(key)
