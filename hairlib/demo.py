"""``hairlib demo``: offline, on CPU, in seconds.

Today it shows the mini world's renderer — faces, their exact hair masks, and the renderer's
*ground-truth* hair edits (same person, new hair: what every editing method is measured
against) — and, once the trained mini networks are shipped, samples of the mini StyleGAN2.
The mini-world issue extends it with inversion and the editing issues with edits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

__all__ = ["run_demo"]

TRUTH_EDITS = (("red", "afro"), ("blond", "bob cut"), ("purple", "mohawk"))


def run_demo(out_dir="results/demo", seed: int = 0, n: int = 8) -> Dict[str, Path]:
    """Write the demo's pictures into ``out_dir``; returns {name: path}."""
    from hairlib import viz
    from hairlib.mini import render as R

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = R.sample_params(seed, n=n, split="train")
    images, masks, _ = R.render_batch(params)
    rows, labels = [images, viz.overlay_mask(images, masks["hair"])], ["renders", "hair mask"]
    for color, style in TRUTH_EDITS:
        edited, _, _ = R.render_batch([p.replace(hair_color=color, hairstyle=style, hat=0) for p in params])
        rows.append(edited)
        labels.append(f"truth: {color} {style}")
    paths = {}
    g_path = Path(__file__).resolve().parent / "mini" / "weights" / "stylegan2.safetensors"
    if g_path.exists():
        import torch

        from hairlib.mini.train_stylegan2 import load_shipped_generator

        G = load_shipped_generator()
        with torch.no_grad():
            z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed))
            rows.append(G(z, space="z", truncation=0.7))
        labels.append("mini StyleGAN2")
    picture = viz.grid(rows, labels, scale=2)
    paths["grid"] = out_dir / "demo.png"
    picture.save(paths["grid"])
    return paths
