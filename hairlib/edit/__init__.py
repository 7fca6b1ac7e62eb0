"""Editing methods, one module each, behind one entry point.

    r = hairlib.edit(world, w, "curly red hair", method="global", alpha=4.1, beta=0.15)
    r = hairlib.edit(world, w, "blond hair", method="optimize", steps=40)

Every method takes a World and W+ latents [N, num_ws, D] and returns an ``EditResult``
(edited latents, images, source images, what it changed, time). ``hairlib.edit`` is this
package, made callable.
"""
from __future__ import annotations

import sys
import types

from hairlib.edit.result import EditResult

__all__ = ["edit", "EditResult", "METHODS"]

METHODS = {
    "optimize": "StyleCLIP latent optimisation (hairlib.edit.optimize)",
    "global": "StyleCLIP global directions in StyleSpace (hairlib.edit.global_dir)",
    "mapper": "StyleCLIP latent mapper, one trained per prompt (hairlib.edit.mapper)",
    "hairclip": "HairCLIP conditional hair mapper: hairstyle= and/or color=, text or reference (hairlib.edit.hairclip)",
}


def edit(world, latents, text=None, method: str = "optimize", *, progress: bool = False, **kw) -> EditResult:
    """Edit ``latents`` (W+ [N, num_ws, D]) of ``world`` toward ``text`` with ``method``.

    Keyword arguments go to the method: optimize (steps, lr, l2_lambda, id_lambda, space, ...),
    global (alpha, beta, neutral), mapper (mapper=path or module, or the shipped one for the text),
    hairclip (hairstyle=, color=: a text, a reference image or W+ latents; mapper=)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: " + ", ".join(METHODS))
    if method in ("optimize", "global", "mapper"):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"method {method!r} needs a non-empty text prompt, e.g. \"curly hair\"")
        text = text.strip()
    if latents.ndim != 3 or latents.shape[1:] != (world.generator.num_ws, world.generator.style_dim):
        raise ValueError(f"latents must be W+ [N, {world.generator.num_ws}, {world.generator.style_dim}], "
                         f"got {tuple(latents.shape)}")
    if method == "optimize":
        from hairlib.edit.optimize import OptimizeConfig, optimize

        cfg = OptimizeConfig(**world.defaults.get("optimize", {}))
        return optimize(world, latents, text, cfg, progress=progress, **kw)
    if method == "global":
        from hairlib.edit.global_dir import global_edit

        kw = {**world.defaults.get("global", {}), **kw}
        return global_edit(world, latents, text, progress=progress, **kw)
    if method == "mapper":
        from hairlib.edit.mapper import mapper_edit

        return mapper_edit(world, latents, text, **kw)
    from hairlib.edit.hairclip import hairclip_edit

    if text is not None:
        raise ValueError("method 'hairclip' takes hairstyle= and color= (texts or references), not a text")
    return hairclip_edit(world, latents, **kw)


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> EditResult:
        return edit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
