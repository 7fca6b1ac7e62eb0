"""``hairlib demo``: offline, on CPU, in well under a minute.

It shows the mini world: renders of the procedural face renderer with their exact hair masks,
the renderer's *ground-truth* hair edits (same person, new hair: what every editing method is
measured against), faces sampled from the mini StyleGAN2, and the renders inverted into its
W+ (encoder + a few optimisation steps) and generated back, with their PSNR, and the shipped
HairCLIP mapper's edits of those inversions toward the same hair as the ground-truth rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import hairlib
from hairlib import viz
from hairlib.mini import render as R

__all__ = ["run_demo"]

TRUTH_EDITS = (("red", "afro"), ("blond", "bob cut"), ("purple", "mohawk"))


def run_demo(out_dir="results/demo", seed: int = 0, n: int = 8, invert_steps: int = 50) -> Dict[str, Path]:
    """Write the demo's pictures into ``out_dir``; returns {name: path}."""
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
    try:
        world = hairlib.load_world("mini")
    except FileNotFoundError as e:  # a checkout whose mini weights are not all trained yet
        print(f"demo: the mini StyleGAN2 part is skipped ({e})")
        world = None
    if world is not None:
        import torch

        with torch.no_grad():
            rows.append(world.generate(world.sample(n, seed=seed, truncation=0.7)))
        labels.append("mini StyleGAN2")
        res = world.invert(world.align(images), steps=invert_steps, full=True)
        rows.append(res.images)
        labels.append(f"inverted ({res.psnr.mean():.1f} dB)")
        if world.hairclip_mapper is not None:
            for color, style in TRUTH_EDITS:
                r = hairlib.edit(world, res.wplus, method="hairclip", hairstyle=f"{style} hairstyle", color=f"{color} hair")
                rows.append(r.images)
                labels.append(f"HairCLIP: {color} {style}")
    picture = viz.grid(rows, labels, scale=2)
    paths["grid"] = out_dir / "demo.png"
    picture.save(paths["grid"])
    return paths
