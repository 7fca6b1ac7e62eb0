"""Editing methods, one module each, behind one entry point (``hairlib.edit``).

    r = hairlib.edit(world, w, "curly red hair", method="global", alpha=4.1, beta=0.15)
    r = hairlib.edit(world, w, "blond hair", method="optimize", steps=40, settings="paper")
    r = hairlib.edit(world, w, "she has red hair, eyeglasses, a smile", method="maniclip")

Every method takes a World and W+ latents [N, num_ws, D] and returns an ``EditResult``
(edited latents, images, source images, what it changed, time). Settings come by name
(``hairlib.methods.settings``): the world's, or the paper's.
"""
from __future__ import annotations

from hairlib.methods.global_dir import global_edit
from hairlib.methods.hairclip import hairclip_edit
from hairlib.methods.maniclip import maniclip_edit
from hairlib.methods.mapper import mapper_edit
from hairlib.methods.optimize import optimize
from hairlib.methods.result import EditResult

__all__ = ["edit", "EditResult", "METHODS"]

METHODS = {
    "optimize": "StyleCLIP latent optimisation (hairlib.methods.optimize)",
    "global": "StyleCLIP global directions in StyleSpace (hairlib.methods.global_dir)",
    "mapper": "StyleCLIP latent mapper, one trained per prompt (hairlib.methods.mapper)",
    "hairclip": "HairCLIP conditional hair mapper: hairstyle= and/or color=, text or reference (hairlib.methods.hairclip)",
    "maniclip": "ManiCLIP editor: several attributes from one sentence, no optimisation (hairlib.methods.maniclip)",
}


def edit(world, latents, text=None, method: str = "optimize", *, settings=None, progress: bool = False,
         **kw) -> EditResult:
    """Edit ``latents`` (W+ [N, num_ws, D]) of ``world`` toward ``text`` with ``method``.

    ``settings``: "world" (default: the world's, ``world.settings``), "paper" (exactly the
    authors' values and code paths) or a ``hairlib.methods.settings.Settings``. Keyword arguments
    go to the method and override its settings: optimize (steps, lr, l2_lambda, id_lambda, space,
    ...), global (alpha, beta, neutral), mapper (mapper=path or module, or the shipped one for the
    text), hairclip (hairstyle=, color=: a text, a reference image or W+ latents; mapper=), maniclip
    (editor=, truncation=: how the latents were drawn, 1.0 for inverted images, strength=)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: " + ", ".join(METHODS))
    if method in ("optimize", "global", "mapper", "maniclip"):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"method {method!r} needs a non-empty text prompt, e.g. \"curly hair\"")
        text = text.strip()
    if latents.ndim != 3 or latents.shape[1:] != (world.generator.num_ws, world.generator.style_dim):
        raise ValueError(f"latents must be W+ [N, {world.generator.num_ws}, {world.generator.style_dim}], "
                         f"got {tuple(latents.shape)}")
    if method == "optimize":
        return optimize(world, latents, text, settings=settings, progress=progress, **kw)
    if method == "global":
        return global_edit(world, latents, text, settings=settings, progress=progress, **kw)
    if method == "mapper":
        return mapper_edit(world, latents, text, **kw)
    if method == "maniclip":
        return maniclip_edit(world, latents, text, settings=settings, **kw)
    if text is not None:
        raise ValueError("method 'hairclip' takes hairstyle= and color= (texts or references), not a text")
    return hairclip_edit(world, latents, settings=settings, **kw)
