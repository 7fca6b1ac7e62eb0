"""load_world("mini") wires the shipped networks together (here: tiny stand-ins in a temp folder)."""
import numpy as np
import pytest
import torch

import hairlib
from hairlib.mini import render as R


def test_mini_world_end_to_end(tiny_weights):
    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    w = world.sample(n=2, seed=0)
    assert torch.equal(w, world.sample(n=2, seed=0))
    x = world.generate(w)
    assert x.shape == (2, 3, 16, 16)
    renders = R.render_batch(R.sample_params(np.random.default_rng(0), n=2))[0]  # 64 px uint8
    aligned = world.align(renders)
    assert aligned.shape == (2, 3, 16, 16) and aligned.min() >= -1
    res = world.invert(aligned, steps=3, full=True)
    assert res.wplus.shape == w.shape and res.psnr.shape == (2,)
    sim = world.identity_similarity(x, x)
    assert torch.allclose(sim, torch.ones(2), atol=1e-5)
    emb = world.clip.encode_text("red hair")
    assert emb.shape == (1, 16)
    assert "afro" in world.vocab["hairstyles"]


def test_world_repr_is_a_summary_not_every_layer(tiny_weights):
    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    text = repr(world)
    assert text.splitlines()[0] == "World('mini', device cpu)"
    assert "StyleGAN2, 16 px, W+ [" in text and "classifier" in text and "encoder" in text
    assert "mappers     none here" in text and "no mapper here" in text  # the tiny folder ships none
    assert len(text.splitlines()) < 15 and "EqualLinear" not in text


def test_missing_weights_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="stylegan2, clip, identity, classifier, encoder missing"):
        hairlib.load_world("mini", weights_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown world"):
        hairlib.load_world("moon")


def test_align_rejects_bad_input(tiny_weights, tmp_path):
    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        world.align(tmp_path / "x.png")
    with pytest.raises(ValueError, match="RGB uint8"):
        world.align(np.zeros((8, 8), dtype=np.float32))
