"""hairlib: edit faces and hair with CLIP and StyleGAN2 (StyleCLIP, HairCLIP, ManiCLIP).

    import hairlib
    world = hairlib.load_world("mini")
    w = world.sample(4, seed=0)
    r = hairlib.edit(world, w, "curly hair", method="optimize")
"""
from hairlib._version import __version__

__all__ = ["load_world", "edit", "__version__"]


def load_world(name: str = "mini", device="cpu", **kw):
    """A World (generator, CLIP, identity, classifier, inversion, vocabulary); see ``hairlib.worlds``."""
    from hairlib.worlds import load_world as _load_world

    return _load_world(name, device, **kw)


def edit(world, latents, text=None, method: str = "optimize", **kw):
    """Edit W+ latents of ``world`` by text (or HairCLIP conditions); see ``hairlib.methods.edit``."""
    from hairlib.methods import edit as _edit

    return _edit(world, latents, text, method, **kw)
