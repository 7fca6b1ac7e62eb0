"""HairCLIP inference: edit hair by hairstyle and/or colour, each from a text or a reference.

    r = hairlib.edit(world, w, hairstyle="afro hairstyle", color="purple hair", method="hairclip")
    r = hairlib.edit(world, w, color=reference_image, method="hairclip")

A condition is a CLIP embedding, as the authors compute it (``hairlib.nets.hair_mapper``):
* text -> ``clip.embed_text_raw`` of the text as written (the authors' prompts are
  "<hairstyle> hairstyle" and "<colour> hair");
* reference -> the image's hair region only (the world's hair mask times the image), then
  ``clip.embed_image_raw``. A reference may be a path or an array (aligned by the world, as a
  photo), an image tensor in [-1, 1] at the generator's resolution, or W+ latents (generated).
Either condition may be absent: that part of the mapper then runs without modulation.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from hairlib.edit.result import EditResult
from hairlib.nets.hair_mapper import HairMapper

__all__ = ["condition_embedding", "reference_image", "hairclip_edit"]

Condition = Union[None, str, Path, np.ndarray, torch.Tensor, Any]


def reference_image(world, ref) -> torch.Tensor:
    """A reference (path, PIL/array photo, image tensor, or W+ latents) -> images [N, 3, R, R]."""
    if isinstance(ref, torch.Tensor):
        if ref.ndim == 3 and ref.shape[1:] == (world.generator.num_ws, world.generator.style_dim):
            with torch.no_grad():
                return world.generate(ref.to(world.device))
        if ref.ndim == 4 and ref.shape[1] == 3:
            return world.align(ref)
        raise ValueError(f"a reference tensor must be W+ latents or images [N, 3, H, W], got {tuple(ref.shape)}")
    return world.align(ref)  # paths, PIL images, uint8 arrays (ffhq: FFHQ-aligned)


def condition_embedding(world, cond: Condition) -> Optional[torch.Tensor]:
    """None, a text, or a reference -> the mapper's condition [N or 1, E] (or None)."""
    if cond is None:
        return None
    if isinstance(cond, str) and not Path(cond).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        if not cond.strip():
            raise ValueError("an empty text is not a condition; pass None to leave that part unchanged")
        return world.clip.embed_text_raw(cond.strip())
    images = reference_image(world, cond)
    if world.masks is None:
        raise ValueError(f"the {world.name} world has no face parser: reference images need hair masks")
    with torch.no_grad():
        hair = world.masks(images)["hair"]
        return world.clip.embed_image_raw(images * hair)


def hairclip_edit(world, latents: torch.Tensor, *, hairstyle: Condition = None, color: Condition = None,
                  mapper: Optional[HairMapper] = None, strength: float = 0.1) -> EditResult:
    """Edit W+ latents with a HairCLIP mapper (the given one, or ``world.defaults["hairclip"]``)."""
    if hairstyle is None and color is None:
        raise ValueError("give a hairstyle, a colour, or both (text or reference image)")
    t0 = time.time()
    if mapper is None:
        mapper = world.defaults.get("hairclip_mapper")
        if mapper is None:
            raise ValueError(f"the {world.name} world has no trained HairCLIP mapper yet; pass mapper=")
    mapper = mapper.to(world.device).eval()
    e_style, e_color = condition_embedding(world, hairstyle), condition_embedding(world, color)
    with torch.no_grad():
        w = latents.to(world.device)
        src = world.generate(w)
        w_hat = mapper.edit(w, e_style, e_color, strength)
        images = world.generate(w_hat).clamp(-1, 1)
    describe = lambda c: c if isinstance(c, str) or c is None else "reference"  # noqa: E731
    return EditResult(latents=w_hat, images=images, source_images=src.clamp(-1, 1), method="hairclip",
                      text={"hairstyle": describe(hairstyle), "color": describe(color)}, seconds=time.time() - t0,
                      info={"strength": strength})
