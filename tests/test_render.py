"""The mini renderer: determinism, exact masks, hair edits that touch only hair, visibly distinct
attributes, labels, and the sampler's split and conflict rules."""
import json

import numpy as np
import pytest
import torch

from hairlib.mini import vocab
from hairlib.mini.render import (PARTS, FaceParams, from_tensor, heldout_combination_index,
                                 is_heldout_combination, render, render_batch, sample_params, to_tensor)
from hairlib.mini.vocab import (ATTRIBUTES, HAIR_COLOR_RGB, HAIR_COLORS, HAIRSTYLES, HAT_STYLES,
                                LABEL_NAMES, NO_HAIR_COLOR)


@pytest.fixture(scope="module")
def people():
    return sample_params(123, n=40, split=None)


def _plain(seed, **kw):
    """A person without accessories that cover hair or face, pose jitter kept."""
    base = dict(hat=0, eyeglasses=0, beard=0, mustache=0, earrings=0)
    base.update(kw)
    return sample_params(seed, split=None, **base)


def test_render_is_deterministic(people):
    for p in people[:10]:
        a, b = render(p), render(FaceParams.from_dict(p.to_dict()))
        assert a.image.dtype == np.uint8 and a.image.shape == (64, 64, 3)
        assert a.image.tobytes() == b.image.tobytes()
        for k in a.masks:
            assert np.array_equal(a.masks[k], b.masks[k])
    assert sample_params(7, n=5) == sample_params(7, n=5)
    assert sample_params(7) != sample_params(8)


def test_masks_are_exclusive_and_cover_the_image(people):
    for p in people:
        r = render(p)
        assert set(r.masks) == {"hair", "face", "background"}
        stack = np.stack([r.masks[k] for k in ("hair", "face", "background")])
        assert stack.dtype == bool and stack.shape == (3, 64, 64)
        assert (stack.sum(0) == 1).all()
        assert r.masks["face"].sum() > 300 and r.masks["background"].sum() > 300
        # the part map agrees with the masks where it says hair / background
        hair_part = r.parts == PARTS.index("hair")
        assert not (hair_part & ~r.masks["hair"]).any()
        assert not ((r.parts == 0) & r.masks["face"] & (r.parts != 0)).any()


def test_other_sizes():
    p = sample_params(3)
    for size in (32, 128):
        r = render(p, size=size)
        assert r.image.shape == (size, size, 3)
        assert all(m.shape == (size, size) for m in r.masks.values())


def test_hair_mask_empty_for_bald_larger_for_big_styles():
    for seed in range(5):
        p = _plain(seed)
        area = {s: int(render(p.replace(hairstyle=s)).masks["hair"].sum()) for s in HAIRSTYLES}
        assert area["bald"] == 0
        assert all(area[s] > 20 for s in HAIRSTYLES if s != "bald"), area
        for big in ("afro", "long straight", "curly", "bangs"):
            assert area[big] > 1.8 * area["buzz cut"], area
        assert area["afro"] > area["curly"] > area["short"]


def test_hairstyle_silhouettes_differ():
    """Every pair of styles differs in many hair pixels (same person, same colour)."""
    for seed in range(3):
        p = _plain(seed)
        masks = {s: render(p.replace(hairstyle=s)).masks["hair"] for s in HAIRSTYLES}
        for i, a in enumerate(HAIRSTYLES):
            for b in HAIRSTYLES[i + 1:]:
                assert (masks[a] ^ masks[b]).sum() >= 40, (a, b)


def test_hair_color_change_touches_only_hair(people):
    for p in people[:12]:
        if HAIRSTYLES[p.hairstyle] == "bald":
            p = p.replace(hairstyle="afro")
        a = render(p)
        for c in HAIR_COLORS:
            b = render(p.replace(hair_color=c))
            for k in a.masks:
                assert np.array_equal(a.masks[k], b.masks[k])
            changed = (a.image != b.image).any(-1)
            assert not (changed & ~a.masks["hair"]).any()


def test_hair_colors_are_distinct_in_the_hair_mask():
    """The mean colour of the hair (pixels whose centre is hair, so edges mixed with skin or
    background do not count) is nearest its own colour; red is red."""
    ref = np.array([HAIR_COLOR_RGB[c] for c in HAIR_COLORS], dtype=np.float64)
    for seed in range(4):
        for style in ("short", "buzz cut", "bangs", "ponytail", "mohawk"):
            p = _plain(seed, hairstyle=style)
            for i, c in enumerate(HAIR_COLORS):
                r = render(p.replace(hair_color=c))
                m = r.parts == PARTS.index("hair")
                assert m.sum() >= 25 and not (m & ~r.masks["hair"]).any()
                mean = r.image[m].astype(np.float64).mean(0)
                assert np.argmin(((ref - mean) ** 2).sum(1)) == i, (style, c, mean)
                if c == "red":
                    assert mean[0] > mean[1] + 60 and mean[0] > mean[2] + 60


def test_hair_edit_keeps_everything_that_is_not_hair(people):
    """Changing only the hair leaves every pixel that is not hair in either render identical."""
    for p in people[:8]:
        a = render(p)
        for s in HAIRSTYLES:
            q = p.replace(hairstyle=s, hair_color=(p.hair_color + 3) % len(HAIR_COLORS),
                          hair_volume=1.0 - p.hair_volume, hair_side=1 - p.hair_side)
            b = render(q)
            keep = ~a.masks["hair"] & ~b.masks["hair"]
            assert np.array_equal(a.image[keep], b.image[keep]), s
            both_face = a.masks["face"] & b.masks["face"]
            assert both_face.sum() > 300
            assert np.array_equal(a.image[both_face], b.image[both_face])


def test_every_attribute_value_changes_the_image():
    for gender in (0, 1):
        base = _plain(11, hairstyle="short", lipstick=0, smiling=0, age=0, gender=gender,
                      eye_color=0)
        for attr, values in ATTRIBUTES.items():
            imgs = [render(base.replace(**{attr: v})).image for v in values]
            for i in range(len(values)):
                for j in range(i + 1, len(values)):
                    diff = int((imgs[i] != imgs[j]).any(-1).sum())
                    assert diff >= 6, (attr, values[i], values[j], diff)


def test_labels_round_trip():
    for p in sample_params(5, n=30, split=None):
        d = p.to_dict()
        q = FaceParams.from_dict(json.loads(json.dumps(d)))
        assert q == p and q.labels() == p.labels()
        lab = p.labels()
        assert tuple(lab) == LABEL_NAMES
        r = render(p)
        assert r.labels == lab
        if HAIRSTYLES[p.hairstyle] == "bald":
            assert lab["hair_color"] == NO_HAIR_COLOR
        else:
            assert lab["hair_color"] == p.hair_color
        # names and indices are interchangeable
        names = p.label_names()
        if names["hair_color"] == "none":
            names.pop("hair_color")
        assert p.replace(**names) == p
        assert p.identity().shape == (16,) and p.identity().dtype == np.float32
    with pytest.raises(ValueError):
        FaceParams(hairstyle="dreadlocks")
    with pytest.raises(KeyError):
        FaceParams.from_dict({"wings": 2})


def test_sampler_respects_split_and_conflicts():
    ps = sample_params(2024, n=5000, split="train")
    hat_ok = {HAIRSTYLES.index(s) for s in HAT_STYLES}
    styles, colors = set(), set()
    for p in ps:
        assert not is_heldout_combination(p)
        if p.hat:
            assert p.hairstyle in hat_ok
        if p.beard or p.mustache:
            assert p.gender == 1
        if p.lipstick:
            assert p.gender == 0
        styles.add(p.hairstyle)
        colors.add(p.hair_color)
    assert styles == set(range(len(HAIRSTYLES))) and colors == set(range(len(HAIR_COLORS)))
    for attr in ATTRIBUTES:  # every attribute value occurs
        assert {getattr(p, attr) for p in ps} == set(range(len(ATTRIBUTES[attr])))
    held = sample_params(1, n=300, split="heldout")
    assert all(is_heldout_combination(p) for p in held)
    # every held-out combination is reachable
    found = set()
    for p in held:
        for i, c in enumerate(vocab.HELDOUT_COMBINATIONS):
            if all(p.label_names().get(k) == v for k, v in c.items()):
                found.add(i)
    assert found == set(range(len(vocab.HELDOUT_COMBINATIONS)))
    # the vectorised index agrees: every held-out render carries one, no training render any
    idx = heldout_combination_index(render_batch(held[:40])[2])
    assert (idx >= 0).all() and set(idx.tolist()) <= found
    assert (heldout_combination_index(render_batch(ps[:40])[2]) == -1).all()
    # pinning
    afros = sample_params(0, n=20, hairstyle="afro")
    assert all(p.hairstyle == HAIRSTYLES.index("afro") for p in afros)
    assert all(p.hat == 0 for p in sample_params(0, n=50, hairstyle="afro"))
    with pytest.raises(ValueError):
        sample_params(0, hairstyle="afro", hair_color="green", split="train")
    p = sample_params(0, hairstyle="afro", hair_color="green", split="heldout")
    assert is_heldout_combination(p)


def test_batch_and_tensor_round_trip():
    ps = sample_params(9, n=6)
    images, masks, labels = render_batch(ps)
    assert images.shape == (6, 64, 64, 3) and images.dtype == np.uint8
    assert masks["hair"].shape == (6, 64, 64)
    assert set(labels) == set(LABEL_NAMES) and labels["hairstyle"].shape == (6,)
    for i, p in enumerate(ps):
        assert np.array_equal(images[i], render(p).image)
    t = to_tensor(images)
    assert t.shape == (6, 3, 64, 64) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert np.array_equal(from_tensor(t), images)
    assert to_tensor(images[0]).shape == (1, 3, 64, 64)
