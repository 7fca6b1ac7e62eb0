"""The editing entry point and StyleCLIP's optimisation and global directions, on a tiny random
world (wiring and the methods' mechanics; behaviour on the trained mini world is in
test_edit_mini.py)."""
import pytest
from dataclasses import replace
import torch

import hairlib
from hairlib.methods.global_dir import GlobalConfig, GlobalDirections, global_edit
from hairlib.methods.optimize import lr_schedule, optimize

TINY_GLOBAL = GlobalConfig(n_stats=512, n_images=3, batch=40)


@pytest.fixture(scope="module")
def world(tiny_weights):
    return hairlib.load_world("mini", weights_dir=tiny_weights)


def test_lr_schedule_matches_styleclip():
    assert lr_schedule(0.0, 0.1) == 0.0
    assert lr_schedule(0.025, 0.1) == pytest.approx(0.05)  # halfway up the 5 % ramp
    assert lr_schedule(0.5, 0.1) == pytest.approx(0.1)
    assert lr_schedule(1.0, 0.1) == pytest.approx(0.0)
    assert lr_schedule(0.875, 0.1) == pytest.approx(0.05)  # halfway down the cosine ramp


def test_optimize_lowers_clip_loss_and_respects_l2(world):
    from hairlib.nets.clip import clip_loss

    w = world.sample(2, seed=1)
    txt = world.clip.encode_text("red hair")
    before = clip_loss(world.clip, world.generate(w), txt)
    r = optimize(world, w, "red hair", steps=25, id_lambda=0.0, l2_lambda=0.0, settings="paper", progress=False)
    after = clip_loss(world.clip, r.images, txt)
    assert (after < before).all() and r.latents.shape == w.shape and len(r.losses) == 25
    assert r.losses[-1] < r.losses[0]
    # a large L2 weight keeps the latent near the source
    near = optimize(world, w, "red hair", steps=25, id_lambda=0.0, l2_lambda=100.0, settings="paper", progress=False)
    assert (near.latents - w).norm() < 0.5 * (r.latents - w).norm()


def test_optimize_batches_like_single_runs(world):
    w = world.sample(2, seed=2)
    both = optimize(world, w, ["red hair", "blond hair"], steps=5, settings="paper", progress=False)
    one = optimize(world, w[1:], "blond hair", steps=5, settings="paper", progress=False)
    assert torch.allclose(both.latents[1:], one.latents, atol=1e-4)


def test_augmented_views_shift_and_flip_but_keep_colours():
    from hairlib.methods.losses import augment_views

    x = torch.rand(3, 3, 16, 16) * 2 - 1
    v = augment_views(x, 5, torch.Generator().manual_seed(0), noise=0.0)
    assert v.shape == (15, 3, 16, 16)
    assert torch.equal(v, augment_views(x, 5, torch.Generator().manual_seed(0), noise=0.0))  # seeded
    assert not torch.equal(v, x.repeat(5, 1, 1, 1))  # the views differ from the image
    # every pixel of a view is a pixel of its image (shift with reflection, flip): colours stay
    for k in range(5):
        for i in range(3):
            src = set(map(tuple, x[i].flatten(1).T.tolist()))
            assert set(map(tuple, v[k * 3 + i].flatten(1).T.tolist())) <= src


def test_optimize_with_augmented_views_lowers_the_clip_loss(world):
    from hairlib.nets.clip import clip_loss

    w = world.sample(2, seed=1)
    txt = world.clip.encode_text("red hair")
    before = clip_loss(world.clip, world.generate(w), txt)
    r = optimize(world, w, "red hair", steps=25, id_lambda=0.0, l2_lambda=0.0, augment=4, progress=False)
    assert (clip_loss(world.clip, r.images, txt) < before).all()
    again = optimize(world, w, "red hair", steps=25, id_lambda=0.0, l2_lambda=0.0, augment=4, progress=False)
    assert torch.equal(r.latents, again.latents)  # the views are seeded


def test_optimize_in_stylespace(world):
    w = world.sample(1, seed=3)
    r = optimize(world, w, "smiling", steps=5, space="s", settings="paper", progress=False)
    assert isinstance(r.latents, list) and len(r.latents) == len(world.generator.style_layers)


def test_global_directions_mechanics(world, tmp_path):
    gd = GlobalDirections.compute(world, TINY_GLOBAL, progress=False)
    G = world.generator
    n = sum(sl.channels for sl in G.style_layers if not sl.is_torgb)
    assert gd.relevance.shape == (n, world.clip.embed_dim)
    assert torch.allclose(gd.relevance.norm(dim=1), torch.ones(n), atol=1e-4)
    # statistics: per-channel std of s over samples
    s = G.styles(world.sample(512, seed=9, truncation=1.0))
    assert torch.allclose(gd.std[0], s[0].std(0), rtol=0.25)
    # disk round trip
    back = GlobalDirections.load(gd.save(tmp_path / "gd.safetensors"))
    assert torch.equal(back.relevance, gd.relevance) and back.layers == gd.layers
    # beta above every |relevance| touches no channel and leaves the image alone
    w = world.sample(2, seed=4)
    dt = gd.text_direction(world.clip, "a smiling face", "a face")
    top = (gd.relevance @ dt).abs().max().item()
    r = global_edit(world, w, "a smiling face", beta=top + 1e-3, directions=gd)
    assert r.info["channels_touched"] == 0
    assert torch.allclose(r.images, r.source_images, atol=1e-6)
    # a lower beta touches some, only in covered layers, and alpha 0 is the identity
    r = global_edit(world, w, "a smiling face", beta=0.5 * top, alpha=[0.0, 4.0], directions=gd)
    assert r.info["channels_touched"] > 0
    assert torch.allclose(r.images[:2], r.source_images, atol=1e-5)
    assert not torch.allclose(r.images[2:], r.source_images, atol=1e-3)


def test_global_directions_are_cached(world, monkeypatch):
    world.settings = replace(world.settings, global_preprocess=TINY_GLOBAL)
    calls = []
    real = GlobalDirections.compute.__func__

    def counting(cls, *a, **k):
        calls.append(1)
        return real(cls, *a, **k)
    monkeypatch.setattr(GlobalDirections, "compute", classmethod(counting))
    a = GlobalDirections.for_world(world, progress=False)
    b = GlobalDirections.for_world(world, progress=False)
    assert len(calls) == 1 and torch.equal(a.relevance, b.relevance)
    # smoke: the world's settings cut to 2 images per channel, one cached result for every caller
    s = GlobalDirections.for_world(world, smoke=True, progress=False)
    assert s.meta["config"] == {**TINY_GLOBAL.to_dict(), "n_images": 2, "n_stats": 2048}
    GlobalDirections.for_world(world, smoke=True, progress=False)
    assert len(calls) == 2


def test_the_cache_key_changes_with_either_clip_tower(tiny_weights):
    """A new image tower beside the same texts (as the mini CLIP's see-resnet stage made) must not
    reuse a relevance matrix its predecessor computed."""
    from hairlib.methods.global_dir import fingerprint

    w = hairlib.load_world("mini", weights_dir=tiny_weights)
    before = fingerprint(w)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in w.clip.model.visual.parameters():
            p.add_(0.1 * torch.randn_like(p))
    image = fingerprint(w)
    with torch.no_grad():
        w.clip.model.text_projection.add_(0.1 * torch.randn_like(w.clip.model.text_projection))
    assert len({before, image, fingerprint(w)}) == 3


def test_the_cache_key_sees_every_generator_weight():
    """Changing only the last value of the shipped generator's largest tensor is another generator."""
    from hairlib.methods.global_dir import fingerprint

    world = hairlib.load_world("mini")
    before = fingerprint(world)
    name, big = max(world.generator.state_dict().items(), key=lambda kv: kv[1].numel())
    assert big.numel() * 4 > 1 << 16, name  # beyond the first 64 KB the key used to read
    with torch.no_grad():
        big.view(-1)[-1] += 0.5
    assert fingerprint(world) != before


def test_edit_entry_point_validates(world):
    w = world.sample(1, seed=0)
    with pytest.raises(ValueError, match="unknown method"):
        hairlib.edit(world, w, "red hair", method="magic")
    with pytest.raises(ValueError, match="non-empty text"):
        hairlib.edit(world, w, "  ", method="optimize")
    with pytest.raises(ValueError, match="latents must be W\\+"):
        hairlib.edit(world, w[:, 0], "red hair", method="optimize")
    r = hairlib.edit(world, w, "red hair", method="optimize", steps=2)
    assert r.method == "optimize" and r.images.shape == (1, 3, 16, 16)


def test_global_sliders_widget_updates(world):
    from hairlib import viz

    gd = GlobalDirections.compute(world, TINY_GLOBAL, progress=False)
    box = viz.global_sliders(world, world.sample(2, seed=0), "red hair", directions=gd)
    (alpha, beta), caption, image = box.children[0].children, box.children[1], box.children[2]
    first = bytes(image.value)
    assert first[:4] == b"\x89PNG" and "channels touched" in caption.value
    beta.value = 0.0
    alpha.value = 8.0
    assert "alpha +8.0, beta 0.00" in caption.value and bytes(image.value) != first
