"""hairlib: edit faces and hair with CLIP and StyleGAN2 (StyleCLIP, HairCLIP, ManiCLIP).

    import hairlib
    world = hairlib.load_world("mini")
"""
__version__ = "0.1.0"

__all__ = ["load_world", "edit", "__version__"]


def load_world(name: str = "mini", device="cpu", **kw):
    """A World (generator, CLIP, identity, classifier, inversion, vocabulary); see ``hairlib.worlds``."""
    from hairlib.worlds import load_world as _load_world

    return _load_world(name, device, **kw)


def __getattr__(name):
    if name == "edit":  # the package hairlib.edit, callable: hairlib.edit(world, w, text, method=...)
        import importlib

        return importlib.import_module("hairlib.edit")
    raise AttributeError(f"module 'hairlib' has no attribute {name!r}")
