"""hairlib: edit faces and hair with CLIP and StyleGAN2 (StyleCLIP, HairCLIP, ManiCLIP).

    import hairlib
    world = hairlib.load_world("mini")
"""
__version__ = "0.1.0"

__all__ = ["load_world", "__version__"]


def load_world(name: str = "mini", device="cpu", **kw):
    """A World (generator, CLIP, identity, classifier, inversion, vocabulary); see ``hairlib.worlds``."""
    from hairlib.worlds import load_world as _load_world

    return _load_world(name, device, **kw)
