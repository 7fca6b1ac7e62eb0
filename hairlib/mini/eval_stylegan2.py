"""Evaluate a mini StyleGAN2 with the mini attribute classifier.

    python -m hairlib.mini.eval_stylegan2 [--state runs/mini_stylegan2/state.pt] [--n 2000]
    python -m hairlib.mini.eval_stylegan2 --state runs/mini_stylegan2/paired/state.pt --codes --out DIR
    python -m hairlib.mini.eval_stylegan2 --state runs/mini_stylegan2/paired/state.pt --fit --out DIR

Reports, for ``n`` samples (truncation 1) against ``n`` fresh training-split renders:
* attribute frequencies by the classifier, per label value, samples vs renders (target: every
  frequency within 5 points), and each hairstyle's and hair colour's frequency among samples
  over its frequency among renders (target: every one >= 1/2);
* KID in the classifier's feature space, samples vs renders beside renders vs renders (the
  floor that the same distribution reaches);
* sharpness: the mean |Laplacian| of the samples over that of the renders (target >= 0.8);
* stability: the share of faces whose hairstyle reading changes when their W+ moves by 5 % of
  W's per-dimension spread, with no edit (target <= 5 %).
Writes ``results/mini_stylegan2_eval.json`` and ``mini_stylegan2_samples.png`` (samples above
renders, row by row).
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

__all__ = ["frequencies", "evaluate_generator", "sharpness", "jitter_stability"]

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def sharpness(images: torch.Tensor) -> float:
    """Mean |Laplacian| of images [N, 3, H, W] in [-1, 1] (per channel, valid positions)."""
    k = LAPLACIAN.to(images).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(torch.nn.functional.conv2d(images, k, groups=3).abs().mean())


@torch.no_grad()
def jitter_stability(G, classifier, n: int = 512, scale: float = 0.05, seed: int = 1) -> float:
    """Share of n sampled faces whose hairstyle reading changes when W+ moves by ``scale`` times
    W's per-dimension standard deviation (Gaussian), with no edit."""
    gen = torch.Generator().manual_seed(seed)
    w = G.mapping(torch.randn(n, G.style_dim, generator=gen))
    spread = G.mapping(torch.randn(4096, G.style_dim, generator=gen)).std(0)
    wplus = G.broadcast(w)
    moved = wplus + scale * spread * torch.randn(wplus.shape, generator=gen)
    a = classifier.predict(G.synthesis(wplus).clamp(-1, 1))["hairstyle"]
    b = classifier.predict(G.synthesis(moved).clamp(-1, 1))["hairstyle"]
    return float((a != b).float().mean())


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
    coverage = {f"{k}={v}": freq_s[k][v] / freq_r[k][v] for k in ("hairstyle", "hair_color") for v in freq_r[k]
                if freq_r[k][v] > 0}
    least = min(coverage, key=coverage.get)
    return {
        "sharpness_ratio": sharpness(samples) / sharpness(renders),
        "least_covered": {"value": least, "ratio": coverage[least]},
        "coverage": coverage,
        "jitter_hairstyle_changed": jitter_stability(G, classifier, n=min(512, n)),
        "n": n,
        "kid_samples_vs_renders": kid(f_s, f_r, subset_size=min(1000, n)),
        "kid_renders_vs_renders": kid(f_r2, f_r, subset_size=min(1000, n)),
        "max_frequency_gap": {"value": worst, "points": 100 * gaps[worst]},
        "within_5_points": sum(g <= 0.05 for g in gaps.values()) / len(gaps),
        "frequencies_samples": freq_s,
        "frequencies_renders": freq_r,
        "_samples": samples[:32],
        "_renders": renders[:32],
    }


class CodeGenerator(torch.nn.Module):
    """A paired run's synthesis driven by its code network: z -> the face z stands for
    (``prior.features_from_z``) -> its code -> the image. Judges the synthesis as if the mapping
    reached the codes exactly (what ``train_stylegan2.fit_final_mapping`` approaches at export)."""

    def __init__(self, G: Generator, A: torch.nn.Module):
        super().__init__()
        self.G, self.A = G, A

    @property
    def style_dim(self) -> int:
        return self.G.style_dim

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        from hairlib.mini.prior import features_from_z

        return self.A(features_from_z(z).to(z))

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        return self.G.broadcast(w)

    def synthesis(self, wplus: torch.Tensor, **kw) -> torch.Tensor:
        return self.G.synthesis(wplus, **kw)

    def forward(self, z: torch.Tensor, space: str = "z") -> torch.Tensor:
        return self.synthesis(self.broadcast(self.mapping(z)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", default=None, help="a GAN state.pt, or warm_G.pt (default: the shipped generator)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--out", default="results")
    p.add_argument("--codes", action="store_true", help="a paired run's state: drive its synthesis by its code "
                   "network (the face z stands for -> its code), not by its mapping")
    p.add_argument("--fit", action="store_true", help="a paired run's state as it ships: its mapping fitted to "
                   "the codes first (train_stylegan2.trained_generator, a few minutes)")
    args = p.parse_args(argv)
    if (args.codes or args.fit) and not args.state:
        p.error("--codes and --fit read a paired run's state: give it with --state")
    if args.codes and args.fit:
        p.error("--codes drives the synthesis by the code network, --fit by the fitted mapping: choose one")
    if args.fit:
        from hairlib.mini.train_stylegan2 import trained_generator

        if Path(args.state).name != "state.pt":
            p.error(f"--fit reads a run folder's state.pt, not {args.state}")
        G, meta = trained_generator(Path(args.state).parent)
        step, fit = meta["step"], meta.get("mapping_fit")
    elif args.state:
        state = load_checkpoint(args.state)  # a GAN state (G_ema) or the warm start's warm_G.pt (G)
        arch = state.get("config", {}).get("arch")  # GAN states carry it; others have the shipped one's
        arch = arch or json.loads((WEIGHTS_DIR / "stylegan2.json").read_text())["arch"]
        G = Generator(StyleGAN2Config.from_dict(arch))
        G.load_state_dict(state["G_ema"] if "G_ema" in state else state["G"])
        G.eval().requires_grad_(False)
        step = int(state.get("step", 0))
        if args.codes:
            from hairlib.mini import render as R
            from hairlib.train.paired_gan import CodeNetwork

            if "A" not in state:
                p.error(f"--codes needs a paired run's state with a code network; {args.state} has none")
            A = CodeNetwork(R.PARAM_FEATURES, G.style_dim, state["config"]["anchor_layers"])
            A.load_state_dict(state["A"])
            G = CodeGenerator(G, A.eval().requires_grad_(False))
    else:
        G, step = load_generator(), None
    res = evaluate_generator(G, load_classifier(), n=args.n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [x[i:i + 8] for i in range(0, 32, 8) for x in (res["_samples"], res["_renders"])]
    viz.grid(rows, labels=["samples", "renders"] * 4, scale=2).save(out / "mini_stylegan2_samples.png")
    res = {k: v for k, v in res.items() if not k.startswith("_")}
    res["step"], res["driven_by"] = step, "codes" if args.codes else "fitted mapping" if args.fit else "mapping"
    if args.fit:
        res["mapping_fit"] = fit
    (out / "mini_stylegan2_eval.json").write_text(json.dumps(res, indent=2))
    print(f"step {step}: sharpness {res['sharpness_ratio']:.2f} of the renders'; least covered "
          f"{res['least_covered']['value']} at {res['least_covered']['ratio']:.2f} of its render frequency; "
          f"a 5 % jitter changes the hairstyle on {100 * res['jitter_hairstyle_changed']:.1f} %")
    print(f"step {step}: KID samples/renders {res['kid_samples_vs_renders'][0]:.4f} "
          f"(renders/renders {res['kid_renders_vs_renders'][0]:.4f}); "
          f"{100 * res['within_5_points']:.0f} % of label values within 5 points; "
          f"worst {res['max_frequency_gap']['value']} off by {res['max_frequency_gap']['points']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
