"""Evaluate a mini StyleGAN2 with the mini attribute classifier.

    python -m hairlib.mini.eval_stylegan2 [--state runs/mini_stylegan2/state.pt] [--n 2000]

Reports, for ``n`` samples (truncation 1) against ``n`` fresh training-split renders:
* attribute frequencies by the classifier, per label value, samples vs renders (the issue's
  target: every frequency within 5 points);
* KID in the classifier's feature space, samples vs renders beside renders vs renders (the
  floor that the same distribution reaches).
Writes ``results/mini_stylegan2_eval.json`` and a 8x8 sample grid.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from hairlib import viz
from hairlib.metrics import kid
from hairlib.mini.train_classifier import render_labelled
from hairlib.mini.vocab import values_of
from hairlib.mini.world import WEIGHTS_DIR, load_classifier, load_generator
from hairlib.nets.stylegan2 import Generator, StyleGAN2Config
from hairlib.train.checkpoint import load_checkpoint

__all__ = ["frequencies", "evaluate_generator"]


def frequencies(pred: Dict[str, torch.Tensor]) -> Dict[str, Dict[str, float]]:
    """{label: {value name: fraction}} of classifier predictions."""
    out = {}
    for name, p in pred.items():
        values = values_of(name)
        counts = torch.bincount(p, minlength=len(values)).double() / max(1, len(p))
        out[name] = {v: float(c) for v, c in zip(values, counts)}
    return out


@torch.no_grad()
def evaluate_generator(G, classifier, n: int = 2000, seed: int = 0, batch: int = 250) -> dict:
    gen = torch.Generator().manual_seed(seed)
    samples = torch.cat([G(torch.randn(min(batch, n - i), G.style_dim, generator=gen), space="z").clamp(-1, 1)
                         for i in range(0, n, batch)])
    renders = torch.cat([render_labelled(min(batch, n - i), np.random.default_rng([seed, i]))[0] for i in range(0, n, batch)])
    renders2 = torch.cat([render_labelled(min(batch, n - i), np.random.default_rng([seed + 1, i]))[0] for i in range(0, n, batch)])
    f_s, f_r, f_r2 = (torch.cat([classifier.features(x[i:i + batch]) for i in range(0, n, batch)])
                      for x in (samples, renders, renders2))
    freq_s, freq_r = frequencies(classifier.predict(samples)), frequencies(classifier.predict(renders))
    gaps = {f"{k}={v}": abs(freq_s[k][v] - freq_r[k][v]) for k in freq_r for v in freq_r[k]}
    worst = max(gaps, key=gaps.get)
    return {
        "n": n,
        "kid_samples_vs_renders": kid(f_s, f_r, subset_size=min(1000, n)),
        "kid_renders_vs_renders": kid(f_r2, f_r, subset_size=min(1000, n)),
        "max_frequency_gap": {"value": worst, "points": 100 * gaps[worst]},
        "within_5_points": sum(g <= 0.05 for g in gaps.values()) / len(gaps),
        "frequencies_samples": freq_s,
        "frequencies_renders": freq_r,
        "_samples": samples[:64],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", default=None, help="a GAN state.pt, or warm_G.pt (default: the shipped generator)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--out", default="results")
    args = p.parse_args(argv)
    if args.state:
        state = load_checkpoint(args.state)  # a GAN state (G_ema) or the warm start's warm_G.pt (G)
        arch = state.get("config", {}).get("arch")  # GAN states carry it; others have the shipped one's
        arch = arch or json.loads((WEIGHTS_DIR / "stylegan2.json").read_text())["arch"]
        G = Generator(StyleGAN2Config.from_dict(arch))
        G.load_state_dict(state["G_ema"] if "G_ema" in state else state["G"])
        G.eval().requires_grad_(False)
        step = int(state.get("step", 0))
    else:
        G, step = load_generator(), None
    res = evaluate_generator(G, load_classifier(), n=args.n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    viz.grid([res["_samples"][i:i + 8] for i in range(0, 64, 8)], scale=1).save(out / "mini_stylegan2_samples.png")
    res = {k: v for k, v in res.items() if not k.startswith("_")}
    res["step"] = step
    (out / "mini_stylegan2_eval.json").write_text(json.dumps(res, indent=2))
    print(f"step {step}: KID samples/renders {res['kid_samples_vs_renders'][0]:.4f} "
          f"(renders/renders {res['kid_renders_vs_renders'][0]:.4f}); "
          f"{100 * res['within_5_points']:.0f} % of label values within 5 points; "
          f"worst {res['max_frequency_gap']['value']} off by {res['max_frequency_gap']['points']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
