"""Reading a picture as a person sees it: upright, in 8-bit RGB, whatever the file stores.

``read_image`` applies the EXIF orientation (a phone photo stored sideways comes out as viewers
show it), scales 16- and 32-bit and floating-point grayscale to 8 bits by the range its format
declares (not by clipping: a 16-bit PNG is not "all white"), expands palettes, grayscale and
CMYK to RGB, and composites transparent pixels on white, saying so (a ``UserWarning``).
Unreadable files raise ``ImageReadError`` naming the file.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

__all__ = ["read_image", "to_rgb", "ImageReadError"]


class ImageReadError(ValueError):
    """A file that is not a readable image."""


def _scaled_to_8bit(im: Image.Image) -> Image.Image:
    """A single-channel image of more than 8 bits (I;16*, I, F) -> L, by its format's range."""
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        arr8 = arr.astype(np.float64) / 65535.0
    elif im.mode == "I":  # 32-bit ints: PNG's 16-bit grayscale decodes to this in some Pillow versions
        top = 65535.0 if arr.min() >= 0 and arr.max() <= 65535 else float(max(arr.max(), 1))
        arr8 = arr.astype(np.float64) / top
    else:  # "F": floats, taken as [0, 1] when they fit, else stretched to their range
        lo, hi = float(arr.min()), float(arr.max())
        arr8 = arr if lo >= 0.0 and hi <= 1.0 else (arr - lo) / max(hi - lo, 1e-12)
    return Image.fromarray(np.clip(np.round(arr8 * 255.0), 0, 255).astype(np.uint8), "L")


def to_rgb(im: Image.Image, name: str = "the image") -> Image.Image:
    """Any PIL mode -> RGB (8 bits), transparent pixels composited on white (with a warning)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im = _scaled_to_8bit(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA") or (im.mode == "L" and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min() < 255:
            warnings.warn(f"{name} has transparent pixels ({(alpha < 255).mean():.0%}); they are composited on white",
                          UserWarning, stacklevel=3)
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    return im.convert("RGB")


def read_image(source: Union[str, Path, Image.Image]) -> Image.Image:
    """A path or PIL image -> an upright 8-bit RGB PIL image (see the module's docstring)."""
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source), "the image")
    path = Path(source)
    if not path.is_file():
        raise ImageReadError(f"cannot read image {path}: no such file")
    try:
        with Image.open(path) as f:
            im = ImageOps.exif_transpose(f)  # phone photos: upright, as viewers show them
            im.load()
    except Exception as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None
    if min(im.size) < 1:
        raise ImageReadError(f"cannot read image {path}: it has no pixels ({im.size[0]}x{im.size[1]})")
    return to_rgb(im, str(path))
