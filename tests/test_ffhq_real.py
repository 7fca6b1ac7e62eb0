"""The ffhq world on the authors' real checkpoints (needs the internet: ``HAIRLIB_NETWORK=1``;
about 1.5 GB fetched into the cache once; a GPU makes it quick but is not required).

Offline, the same code is tested on stand-ins in the authors' formats (tests/test_ffhq_world.py);
these checks are what the stand-ins cannot show: the published files load strictly, the
checksums pinned in the registry are theirs, and the networks do their jobs on a real photo.
"""
import pytest
import torch

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def world():
    """Loaded from a real cache (``HAIRLIB_NETWORK_HOME``, default ``~/.cache/hairlib``), not the
    empty per-test cache the other tests get, so the files are fetched once, not per run."""
    import os

    import hairlib

    old = os.environ.get("HAIRLIB_HOME")
    os.environ["HAIRLIB_HOME"] = os.environ.get("HAIRLIB_NETWORK_HOME", os.path.expanduser("~/.cache/hairlib"))
    try:
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        return hairlib.load_world("ffhq", device=dev, resolution=1024, download=True)
    finally:
        if old is None:
            os.environ.pop("HAIRLIB_HOME", None)
        else:
            os.environ["HAIRLIB_HOME"] = old


@pytest.fixture(scope="module")
def photo(world):
    from skimage import data

    return world.align(data.astronaut())  # [1, 3, 1024, 1024]


def test_e4e_inverts_a_real_photo_into_the_same_person(world, photo):
    res = world.invert(photo, steps=0, full=True)  # the encoder alone, as e4e's paper
    assert res.wplus.shape == (1, 18, 512)
    sim = world.identity_similarity(photo, res.images.clamp(-1, 1)).item()
    assert sim > 0.4, sim  # e4e keeps identity only roughly; a stranger scores ~0
    stranger = world.generate(world.sample(1, seed=0)).clamp(-1, 1)
    assert world.identity_similarity(photo, stranger).item() < sim


def test_the_parser_finds_her_hair_and_face(world, photo):
    m = world.masks(photo)
    hair, bg = m["hair"].mean().item(), m["background"].mean().item()
    assert 0.03 < hair < 0.5 and 0.05 < bg < 0.9, (hair, bg)


def test_clip_reads_the_photo(world, photo):
    img = world.clip.encode_image(photo)
    t = world.clip.encode_text(["a photo of a woman.", "a photo of a cat."])
    sims = (img @ t.t())[0]
    assert sims[0] > sims[1]


def test_a_text_edit_moves_clip_toward_the_text(world, photo):
    import hairlib

    w = world.invert(photo, steps=0)
    r = hairlib.edit(world, w, "a face with curly hair", method="optimize", steps=40)
    t = world.clip.encode_text("a face with curly hair")
    before = (world.clip.encode_image(r.source_images) @ t.t()).item()
    after = (world.clip.encode_image(r.images.clamp(-1, 1)) @ t.t()).item()
    assert after > before
    assert world.identity_similarity(r.source_images, r.images.clamp(-1, 1)).item() > 0.5
