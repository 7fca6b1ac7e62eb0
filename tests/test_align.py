"""FFHQ alignment on real photos that ship with installed packages (dlib's 68 landmarks)."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hairlib import align as A

HAVE_DLIB = importlib.util.find_spec("dlib") is not None
HAVE_MODELS = importlib.util.find_spec("face_recognition_models") is not None  # not imported: needs pkg_resources
needs_dlib = pytest.mark.skipif(not (HAVE_DLIB and HAVE_MODELS),
                                reason='needs dlib and face_recognition_models: pip install "hairlib[align]"')


def _photos():
    from matplotlib import cbook
    from skimage import data

    with cbook.get_sample_data("grace_hopper.jpg") as f:  # a file object in matplotlib 3.x
        grace = np.asarray(Image.open(f).convert("RGB"))  # [600, 512, 3]
    return {"astronaut": data.astronaut(), "grace_hopper": grace}  # astronaut: [512, 512, 3]


PHOTOS = _photos()


def _eyes(lm):
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])  # [2, 2] left, right eye centres


def test_imports_without_dlib():
    code = ("import sys; sys.modules['dlib'] = None; import hairlib.align as A\n"
            "try:\n    A.landmarks(A.np.zeros((8, 8, 3), 'uint8'))\n"
            "except ImportError as e:\n    assert 'hairlib[align]' in str(e), e; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


@needs_dlib
@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize("size", [1024, 256])
def test_eyes_land_where_ffhq_puts_them(name, size):
    res = A.align_with_info(PHOTOS[name], size)
    assert res.image.size == (size, size) and res.image.mode == "RGB"
    expected = res.to_output(_eyes(res.landmarks))  # the quad's geometry
    found = _eyes(A.landmarks(res.image)[0])  # re-detected on the aligned face
    # dlib's landmarks move by a few pixels with the detector's box: 6 px at 1024, 5 at 256
    assert np.abs(found - expected).max() <= max(6 * size / 1024, 5), (found, expected)
    # FFHQ's usual places (module docstring): eyes at x = 384, 640 and y ~ 484-490 of 1024
    typical = np.array([[384, 487], [640, 487]]) * size / 1024
    assert np.abs(found - typical).max() <= 0.008 * size + 3, found  # measured: <= 2.7 px at 1024, 3.8 at 256


def _marked(img, points, radius, value):
    """img [H, W, 3] with soft discs of ``value`` at ``points`` [K, 2] (sub-pixel centres)."""
    out = np.array(img)
    r = int(np.ceil(radius)) + 2
    for px, py in points:
        x0, y0 = int(px) - r, int(py) - r  # a window around the disc
        yy, xx = np.mgrid[y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1]
        w = np.clip(radius + 0.5 - np.hypot(xx - px, yy - py), 0, 1)[..., None]
        win = out[y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1]
        win[:] = np.rint(win * (1 - w) + value * w)
    return out


def _case(name):
    """(photo, its 68 landmarks, output size) exercising one path of FFHQ's steps."""
    img = PHOTOS["grace_hopper"]
    lm = A.landmarks(img)[0]
    if name == "crop":  # quad inside the photo: crop only
        return img, lm, 256
    if name == "shrink":  # face 3x larger than the output needs: antialiased shrink by 2 first
        big = np.asarray(Image.fromarray(img).resize((img.shape[1] * 3, img.shape[0] * 3), Image.LANCZOS))
        return big, (lm + 0.5) * 3 - 0.5, 256
    if name == "pad":  # tight crop: the quad leaves the photo, reflect-pad with blur/median blend
        return img[110:400, 120:420], lm - [120, 110], 256
    if name == "tilted":  # landmarks turned 25 degrees about the face: an oblique quad
        c, t = lm.mean(0), np.deg2rad(25)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        return img, (lm - c) @ rot.T + c, 256
    raise KeyError(name)


@needs_dlib
@pytest.mark.parametrize("case", ["crop", "shrink", "pad", "tilted"])
def test_points_land_where_the_quad_says(case):
    """Discs painted at the eyes and mouth come out where to_output() puts them (the whole
    shrink / crop / pad / transform / resize chain), and to_input() is its inverse."""
    img, lm, size = _case(case)
    points = np.concatenate([_eyes(lm), (lm[48:49] + lm[54:55]) / 2])  # [3, 2]
    quad = A._quad(lm)
    radius = max(3 * np.hypot(*(quad[3] - quad[0])) / size, 1.5)  # ~3 px in the output
    kw = {} if case == "crop" else {"transform_size": 1024}  # the default 4096 once; faster for the rest
    dark, light = (A.align_landmarks(_marked(img, points, radius, v), lm, size, **kw) for v in (0, 255))
    assert np.allclose(dark.quad, quad) and np.allclose(light.quad, quad)
    if case == "pad":  # the quad leaves the photo (top, left and right here)
        assert quad[:, 1].min() < 0
    diff = np.clip(np.float32(light.image) - np.float32(dark.image), 0, None).sum(-1)  # [size, size]
    expected = dark.to_output(points)
    yy, xx = np.mgrid[:size, :size]
    for ex, ey in expected:
        w = diff * ((np.abs(xx - ex) < 12) & (np.abs(yy - ey) < 12))
        found = np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()
        assert np.abs(found - [ex, ey]).max() < 0.15, (case, found, (ex, ey))  # measured: < 0.02 px
    assert np.allclose(dark.to_input(expected), points, atol=1e-9)


@needs_dlib
def test_inputs_path_exif_and_array_kinds(tmp_path):
    grace = PHOTOS["grace_hopper"]
    ref = A.align_with_info(grace, 64, transform_size=256).quad
    turned = Image.fromarray(grace).transpose(Image.Transpose.ROTATE_90)  # stored on its side ...
    exif = turned.getexif()
    exif[0x0112] = 6  # ... with EXIF orientation "rotate 90 clockwise to view", as phones do
    turned.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    res = A.align_with_info(tmp_path / "phone.jpg", 64, transform_size=256)
    assert np.abs(res.quad - ref).max() < 8  # upright again; JPEG moves landmarks a little
    rgba = np.concatenate([grace, np.full((*grace.shape[:2], 1), 255, np.uint8)], -1)
    assert np.allclose(A.align_with_info(rgba, 64, transform_size=256).quad, ref)
    assert np.allclose(A.align_with_info(grace / 255.0, 64, transform_size=256).quad, ref)


@needs_dlib
def test_no_face_is_a_clear_error(tmp_path):
    from skimage import data

    with pytest.raises(A.NoFaceError, match="no face found in the 600x400 image"):
        A.align(data.coffee())
    gray = tmp_path / "gray.png"
    Image.new("L", (300, 300), 128).save(gray)  # grayscale file: converted, then no face
    with pytest.raises(A.NoFaceError, match=r"gray\.png.*eyes at least ~100 px apart"):
        A.align(gray)
    with pytest.raises(ValueError, match="cannot read image"):
        A.align(tmp_path / "missing.png")
    assert issubclass(A.NoFaceError, ValueError)


@needs_dlib
def test_several_faces_largest_or_all():
    small = Image.fromarray(PHOTOS["grace_hopper"]).convert("RGBA")  # [600, 512]; RGBA is converted
    big = small.resize((1024, 1200), Image.LANCZOS)
    canvas = Image.new("RGBA", (512 + 1024, 1200), (90, 90, 90, 255))
    canvas.paste(small, (0, 300))
    canvas.paste(big, (512, 0))
    faces = A.align_with_info(canvas, 256, faces="all", transform_size=256)
    assert len(faces) == 2 and [f.image.size for f in faces] == [(256, 256)] * 2
    sides = [np.hypot(*(f.quad[3] - f.quad[0])) for f in faces]
    assert 1.8 < sides[0] / sides[1] < 2.2  # largest first
    assert faces[1].quad[:, 0].mean() < 512 < faces[0].quad[:, 0].mean()
    largest = A.align_with_info(canvas, 256, transform_size=256)
    assert np.allclose(largest.quad, faces[0].quad)
    assert np.array_equal(np.asarray(largest.image), np.asarray(faces[0].image))


@needs_dlib
def test_min_score_drops_weak_detections():
    found = A.landmarks(PHOTOS["astronaut"], min_score=0.5)  # not the flag on her sleeve (score ~0.1)
    assert len(found) == 1 and _eyes(found[0])[:, 1].max() < 200
    fast = A.landmarks(PHOTOS["astronaut"], upsample=None)  # as is: her ~90 px face is found
    assert len(fast) == 1 and np.abs(_eyes(fast[0]) - _eyes(found[0])).max() < 5
