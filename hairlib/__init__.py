"""hairlib: edit faces and hair with CLIP and StyleGAN2 (StyleCLIP, HairCLIP, ManiCLIP).

    import hairlib
    world = hairlib.load_world("mini")
"""
__version__ = "0.1.0"
