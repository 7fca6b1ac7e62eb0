"""load_world("mini") wires the shipped networks together (here: tiny stand-ins in a temp folder)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_generate_is_the_synthesis_within_bf16_rounding(monkeypatch, dtype):
    """``generate(fast=True)`` (training through the frozen G): bf16 synthesis where the CPU has
    AMX (forced here), fp32 images and gradients within bf16 rounding; elsewhere the same call."""
    world = hairlib.load_world("mini")
    monkeypatch.setattr(hairlib.ops.cpu, "training_dtype", lambda device: dtype)
    w = world.sample(n=4, seed=3).requires_grad_(True)
    ref = world.generate(w)
    (g_ref,) = torch.autograd.grad(ref.square().mean(), w)
    fast = world.generate(w, fast=True)
    (g_fast,) = torch.autograd.grad(fast.square().mean(), w)
    assert fast.dtype == torch.float32 and fast.shape == ref.shape
    if dtype == torch.float32:
        assert torch.equal(fast, ref) and torch.equal(g_fast, g_ref)
    else:
        assert (fast - ref).abs().mean() < 0.005 and not torch.equal(fast, ref)
        assert F.cosine_similarity(g_fast.flatten(), g_ref.flatten(), dim=0) > 0.999
