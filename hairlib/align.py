"""FFHQ face alignment: a photo -> the crop StyleGAN2's FFHQ models were trained on.

The steps of NVlabs' ``ffhq-dataset`` (``recreate_aligned_images``), which e4e, StyleCLIP and
HairCLIP all use: dlib's 68 landmarks; the eye centres (points 36-41, 42-47) and mouth corners
(48, 54); an oriented square ``quad`` centred slightly below the eyes, sized by the larger of
2 x eye-to-eye and 1.8 x eye-to-mouth; shrink the photo when the face is much larger than the
output, crop with a border, pad by reflection with FFHQ's blur/median blend when the square
leaves the photo; map the quad onto a 4096 px square and resize (Lanczos) to the output size.

Where the eyes land (frontal face, eye distance e, eye-centre-to-mouth distance m): the quad's
half side is max(2e, 1.8m) and its centre 0.1 m below the eyes, so in a 1024 px output the
eyes sit at x = 512 -/+ 128 = 384 and 640 when m <= 1.11 e (a longer face brings them closer:
512 -/+ 142 e/m) and at y = 512 - 25.6 m/e, or 483.6 when m > 1.11 e: y is about 484-490.

Needs dlib and the 68-point predictor (``pip install "hairlib[align]"``: dlib-bin and
face_recognition_models, whose ``.dat`` file is found without importing that package, which
needs the removed ``pkg_resources``). Importing this module does not need them.

Coordinates are dlib's: (x, y) with pixel centres at integers.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
from PIL import Image

from hairlib.images import read_image

__all__ = ["NoFaceError", "WrongWorldError", "MultipleFacesWarning", "detect", "Alignment", "landmarks", "align", "align_with_info", "align_landmarks",
           "predictor_path", "output_position", "input_position"]

INSTALL_HINT = 'pip install "hairlib[align]"  (dlib-bin and face_recognition_models)'


class NoFaceError(ValueError):
    """No face was found in the image."""


class MultipleFacesWarning(UserWarning):
    """A photo holds several faces; the message says which one was taken."""


class WrongWorldError(ValueError):
    """The image is not something this world can edit (a photo in the mini world)."""


@dataclass
class Alignment:
    image: Image.Image  # the aligned face, size x size
    quad: np.ndarray  # [4, 2] corners in the input photo: top-left, bottom-left, bottom-right, top-right
    landmarks: np.ndarray  # [68, 2] (x, y) in the input photo
    faces_found: int = 1  # faces in the photo (align_with_info)
    score: float = 0.0  # the detector's score of this face
    box: Tuple[int, int, int, int] = (0, 0, 0, 0)  # the detector's box (x, y, w, h) in the photo

    def to_output(self, points) -> np.ndarray:
        """Points [K, 2] of the input photo -> where they land in ``image``."""
        return output_position(points, self.quad, self.image.size[0])

    def to_input(self, points) -> np.ndarray:
        """Points [K, 2] of ``image`` (e.g. an edited face's) -> the input photo, to paste back."""
        return input_position(points, self.quad, self.image.size[0])


def predictor_path() -> Path:
    """dlib's ``shape_predictor_68_face_landmarks.dat`` inside face_recognition_models."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"face alignment needs the 68-landmark predictor: {INSTALL_HINT}")
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    raise ImportError(f"shape_predictor_68_face_landmarks.dat is missing from face_recognition_models "
                      f"({list(spec.submodule_search_locations)}): reinstall with {INSTALL_HINT}")


@lru_cache(maxsize=1)
def _dlib():
    try:
        import dlib
    except ImportError:
        raise ImportError(f"face alignment needs dlib: {INSTALL_HINT}") from None
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


def _to_pil(image) -> Image.Image:
    """A path, PIL image or array [H, W] / [H, W, 3|4] (uint8, or float in [0, 1]) -> RGB PIL."""
    if isinstance(image, (str, Path, Image.Image)):
        return read_image(image)  # upright (EXIF), 8-bit RGB whatever the file stores
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an image [H, W] or [H, W, 3|4], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")


def detect(image, *, upsample: Optional[int] = 1, min_score: float = 0.0) -> List[Tuple[np.ndarray, float, Tuple[int, int, int, int]]]:
    """Every face dlib finds: (68 landmarks [68, 2] (x, y), detector score, box (x, y, w, h)),
    largest first. ``upsample`` and ``min_score`` as in ``landmarks``."""
    detector, predictor = _dlib()
    arr = np.asarray(_to_pil(image))  # [H, W, 3] uint8
    rects, scores, _ = detector.run(arr, 0 if upsample is None else int(upsample), float(min_score))
    if upsample is None and len(rects) == 0:
        rects, scores, _ = detector.run(arr, 1, float(min_score))
    found = sorted(zip(rects, scores), key=lambda rs: rs[0].width() * rs[0].height(), reverse=True)
    return [(np.array([[p.x, p.y] for p in predictor(arr, r).parts()], np.float64), float(sc),
             (r.left(), r.top(), r.width(), r.height())) for r, sc in found]


def landmarks(image, *, upsample: Optional[int] = 1, min_score: float = 0.0) -> List[np.ndarray]:
    """dlib's 68 landmarks [68, 2] (x, y) of every face, largest face first; [] if none.

    ``upsample``: how many times dlib's frontal face detector doubles the photo before looking.
    1 (default) is e4e's and StyleCLIP's ``align_face`` call and finds faces down to ~40 px wide;
    ``None`` is faster on large photos: the photo as it is (faces from ~80 px), upsampled once only
    if that finds nothing. The landmarks follow the detector's box, so the two can differ by a few
    pixels. ``min_score`` raises the detector's threshold (0) to drop weak detections: on
    skimage's astronaut, upsampling once also "finds" the flag on her sleeve, at score 0.1."""
    return [lm for lm, _, _ in detect(image, upsample=upsample, min_score=min_score)]


def _quad(lm: np.ndarray) -> np.ndarray:
    """FFHQ's oriented square [4, 2] from 68 landmarks."""
    lm = np.asarray(lm, np.float64)
    assert lm.shape == (68, 2), f"expected 68 landmarks [68, 2], got {lm.shape}"
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # the face's horizontal, tilt averaged
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)  # half side
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _frame(quad: np.ndarray):
    quad = np.asarray(quad, np.float64)
    return quad[0], quad[3] - quad[0], quad[1] - quad[0]  # origin, side along x, side along y


def output_position(points, quad: np.ndarray, size: int) -> np.ndarray:
    """Where points [K, 2] of the input photo land in the aligned ``size`` px image.

    The quad transform maps corner quad[0] to the output's corner (-0.5, -0.5) and the square's
    sides onto the output's ``size`` pixels; the shrink step moves this by < 0.2 output px."""
    o, sx, sy = _frame(quad)
    d = np.asarray(points, np.float64) - o
    return np.stack([d @ sx / (sx @ sx), d @ sy / (sy @ sy)], -1) * size - 0.5


def input_position(points, quad: np.ndarray, size: int) -> np.ndarray:
    """Points [K, 2] of the aligned ``size`` px image -> the input photo (``output_position``'s inverse)."""
    o, sx, sy = _frame(quad)
    uv = (np.asarray(points, np.float64) + 0.5) / size
    return o + uv[..., :1] * sx + uv[..., 1:] * sy


def align_landmarks(image, lm: np.ndarray, size: int = 1024, *, transform_size: int = 4096,
                    enable_padding: bool = True) -> Alignment:
    """FFHQ's crop of ``image`` from given 68 landmarks [68, 2] (dlib's, or FFHQ's JSON)."""
    img = _to_pil(image)
    lm = np.asarray(lm, np.float64)
    quad = _quad(lm)
    qsize = np.hypot(*(quad[3] - quad[0]))
    transform_size = max(int(transform_size), int(size))
    out = quad.copy()

    # Shrink: a face much larger than the output is first downsampled, antialiased.
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink)))
        img = img.resize(rsize, Image.LANCZOS)  # PIL's ANTIALIAS, as FFHQ
        out /= shrink
        qsize /= shrink

    # Crop to the quad plus a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(out[:, 0].min())), int(np.floor(out[:, 1].min())),
            int(np.ceil(out[:, 0].max())), int(np.ceil(out[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, img.size[0]), min(crop[3] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        out -= crop[0:2]

    # Pad where the quad leaves the photo: reflect, blur toward the edges, fade to the median colour.
    pad = (int(np.floor(out[:, 0].min())), int(np.floor(out[:, 1].min())),
           int(np.ceil(out[:, 0].max())), int(np.ceil(out[:, 1].max())))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - img.size[0] + border, 0), max(pad[3] - img.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        try:
            from scipy.ndimage import gaussian_filter
        except ImportError:
            raise ImportError(f"FFHQ's padding step needs scipy: pip install scipy, or {INSTALL_HINT}") from None

        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")  # [H, W, 3]
        h, w, _ = arr.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
                          1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]))
        blur = qsize * 0.02
        arr += (gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        out += pad[:2]

    # Transform: the quad onto a transform_size square, then down to the output size.
    img = img.transform((transform_size, transform_size), Image.QUAD, (out + 0.5).flatten(), Image.BILINEAR)
    if size < transform_size:
        img = img.resize((size, size), Image.LANCZOS)
    return Alignment(img, quad, lm)


# Faces after the largest are kept only from this detector score up: on skimage's astronaut the
# flag on her sleeve scores 0.12, her face 1.16.
OTHER_FACE_SCORE = 0.3


def align_with_info(image, size: int = 1024, *, faces: Union[str, int] = "largest", transform_size: int = 4096,
                    enable_padding: bool = True, upsample: Optional[int] = 1,
                    min_score: float = 0.0) -> Union[Alignment, List[Alignment]]:
    """Align the largest face (``faces="largest"``), the N-th largest (``faces=N``, from 0) or
    every face (``"all"``, largest first); each ``Alignment`` holds the aligned image, its quad
    and landmarks in the input photo. Faces after the largest count only from a detector score of
    ``OTHER_FACE_SCORE``. ``upsample`` and ``min_score`` go to the face detector (``landmarks``)."""
    if not (faces in ("largest", "all") or (isinstance(faces, int) and not isinstance(faces, bool) and faces >= 0)):
        raise ValueError(f"faces must be 'largest', 'all' or a face's index (0 = the largest), got {faces!r}")
    if int(size) < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    img = _to_pil(image)
    found = detect(img, upsample=upsample, min_score=min_score)
    found = found[:1] + [f for f in found[1:] if f[1] >= OTHER_FACE_SCORE]
    name = str(image) if isinstance(image, (str, Path)) else f"the {img.size[0]}x{img.size[1]} image"
    if not found:
        raise NoFaceError(f"no face found in {name}: use a photo with a frontal, unoccluded face with the eyes "
                          f"at least ~100 px apart (dlib's detector misses faces under ~40 px wide, "
                          f"and small faces come out blurry)")
    if isinstance(faces, int):
        if faces >= len(found):
            raise NoFaceError(f"{name} has {len(found)} face(s); face {faces + 1} was asked for "
                              f"(faces are numbered from the largest)")
        picked = [found[faces]]
    else:
        picked = found if faces == "all" else found[:1]
    out = [align_landmarks(img, lm, size, transform_size=transform_size, enable_padding=enable_padding)
           for lm, _, _ in picked]
    for a, (_, score, box) in zip(out, picked):
        a.faces_found, a.score, a.box = len(found), score, box
    return out if faces == "all" else out[0]


def align(image, size: int = 1024, *, faces: Union[str, int] = "largest", **kw) -> Union[Image.Image, List[Image.Image]]:
    """A photo (path, PIL image, or uint8 RGB array) -> the FFHQ-aligned face (PIL, ``size`` px),
    or a list of them with ``faces="all"``. Raises ``NoFaceError`` when there is no face.
    Keywords: ``transform_size``, ``enable_padding``, ``upsample``, ``min_score`` (see
    ``align_with_info``)."""
    res = align_with_info(image, size, faces=faces, **kw)
    return [a.image for a in res] if isinstance(res, list) else res.image
