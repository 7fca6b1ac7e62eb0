"""FFHQ face alignment: a photo -> the crop StyleGAN2's FFHQ models were trained on.

The steps of NVlabs' ``ffhq-dataset`` (``recreate_aligned_images``), which e4e, StyleCLIP and
HairCLIP all use: dlib's 68 landmarks; the eye centres (points 36-41, 42-47) and mouth corners
(48, 54); an oriented square ``quad`` centred slightly below the eyes, sized by the larger of
2 x eye-to-eye and 1.8 x eye-to-mouth; shrink the photo when the face is much larger than the
output, crop with a border, pad by reflection with FFHQ's blur/median blend when the square
leaves the photo; map the quad onto a 4096 px square and resize (Lanczos) to the output size.
In the output, the eyes of a frontal face sit near (0.375, 0.47) and (0.625, 0.47) of the side.

Needs dlib and the 68-point predictor (``pip install "hairlib[align]"``: dlib-bin and
face_recognition_models, whose ``.dat`` file is found without importing that package, which
needs the removed ``pkg_resources``).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List, Union

import numpy as np
from PIL import Image

__all__ = ["NoFaceError", "Alignment", "landmarks", "align", "align_with_info", "predictor_path",
           "output_position"]

INSTALL_HINT = 'pip install "hairlib[align]"  (dlib-bin and face_recognition_models)'


class NoFaceError(ValueError):
    """No face was found in the image."""


@dataclass
class Alignment:
    image: Image.Image  # the aligned face, size x size
    quad: np.ndarray  # [4, 2] corners in the input photo (top-left, bottom-left, bottom-right, top-right)
    landmarks: np.ndarray  # [68, 2] in the input photo


def predictor_path() -> Path:
    """dlib's ``shape_predictor_68_face_landmarks.dat`` inside face_recognition_models."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the 68-landmark predictor is not installed: {INSTALL_HINT}")
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    raise ImportError(f"shape_predictor_68_face_landmarks.dat not found in face_recognition_models: {INSTALL_HINT}")


@lru_cache(maxsize=1)
def _dlib():
    try:
        import dlib
    except ImportError:
        raise ImportError(f"face alignment needs dlib: {INSTALL_HINT}") from None
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


def _to_pil(image) -> Image.Image:
    if isinstance(image, (str, Path)):
        try:
            image = Image.open(image)
            image.load()
        except Exception as e:
            raise ValueError(f"cannot read image {image}: {e}") from None
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255 if arr.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]))


def landmarks(image) -> List[np.ndarray]:
    """dlib's 68 landmarks [68, 2] (x, y) of every face, largest face first (empty if none)."""
    dlib, detector, predictor = _dlib()
    arr = np.asarray(_to_pil(image))
    rects = detector(arr, 1)  # upsample once: finds faces down to ~40 px
    rects = sorted(rects, key=lambda r: r.width() * r.height(), reverse=True)
    return [np.array([[p.x, p.y] for p in predictor(arr, r).parts()], dtype=np.float64) for r in rects]


def _quad(lm: np.ndarray):
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y]), c, x, y


def output_position(points: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """Where points [K, 2] of the input photo land in the aligned ``size`` px image."""
    c = quad.mean(0)
    x = (quad[3] - quad[0]) / 2  # half-side vectors of the square
    y = (quad[1] - quad[0]) / 2
    d = np.asarray(points, np.float64) - c
    u = d @ x / (x @ x)
    v = d @ y / (y @ y)
    return np.stack([(u + 1) / 2 * size, (v + 1) / 2 * size], -1)


def _align_one(img: Image.Image, lm: np.ndarray, size: int, transform_size: int, enable_padding: bool) -> Alignment:
    quad0, _, x, _ = _quad(lm)
    quad = quad0.copy()
    qsize = np.hypot(*x) * 2
    # shrink
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        img = img.resize((int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink))), Image.LANCZOS)
        quad /= shrink
        qsize /= shrink
    # crop
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, img.size[0]),
            min(crop[3] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
    # pad (reflect, then FFHQ's blur toward the edges and blend toward the median colour)
    pad = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
           int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0), max(pad[2] - img.size[0] + border, 0),
           max(pad[3] - img.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        from scipy.ndimage import gaussian_filter

        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
                          1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]))
        blur = qsize * 0.02
        arr += (gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]
    # transform
    img = img.transform((transform_size, transform_size), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR)
    if size < transform_size:
        img = img.resize((size, size), Image.LANCZOS)
    return Alignment(img, quad0, lm)


def align_with_info(image, size: int = 1024, *, faces: str = "largest", transform_size: int = 4096,
                    enable_padding: bool = True) -> Union[Alignment, List[Alignment]]:
    """Align the largest face (``faces="largest"``) or every face (``"all"``, largest first);
    returns the aligned image with its quad and landmarks in the input photo."""
    if faces not in ("largest", "all"):
        raise ValueError(f"faces must be 'largest' or 'all', got {faces!r}")
    img = _to_pil(image)
    found = landmarks(img)
    if not found:
        name = image if isinstance(image, (str, Path)) else "the image"
        raise NoFaceError(f"no face found in {name}: use a photo with a frontal, unoccluded face, at least "
                          f"~40 px between the eyes (dlib's frontal face detector)")
    picked = found if faces == "all" else found[:1]
    out = [_align_one(img, lm, size, max(transform_size, size), enable_padding) for lm in picked]
    return out if faces == "all" else out[0]


def align(image, size: int = 1024, *, faces: str = "largest", **kw) -> Union[Image.Image, List[Image.Image]]:
    """A photo (path, PIL image, or array) -> the FFHQ-aligned face (PIL, ``size`` px), or a list
    of them with ``faces="all"``. Raises ``NoFaceError`` when there is no face."""
    res = align_with_info(image, size, faces=faces, **kw)
    return [a.image for a in res] if isinstance(res, list) else res.image
