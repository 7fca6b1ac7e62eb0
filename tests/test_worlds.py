"""load_world("mini") wires the shipped networks together (here: tiny stand-ins in a temp folder)."""
from dataclasses import replace

import numpy as np
import pytest
import torch

import hairlib
from hairlib.mini import render as R
from hairlib.mini import shipping
from hairlib.mini import train_clip
from hairlib.nets.mini_nets import AttributeClassifier, Encoder, EncoderConfig, IdentityNet
from hairlib.nets.stylegan2 import Generator, StyleGAN2Config

TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 48, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("mini_weights")
    torch.manual_seed(0)
    arch = StyleGAN2Config(size=16, style_dim=16, n_mlp=1, channel_multiplier=0.25, channel_max=16)
    G = Generator(arch)
    shipping.save_shipped("stylegan2", G, {"arch": arch.to_dict()}, d)
    clf = AttributeClassifier()
    shipping.save_shipped("classifier", clf, {"config": clf.config.to_dict()}, d)
    idn = IdentityNet()
    shipping.save_shipped("identity", idn, {"config": idn.config.to_dict()}, d)
    enc = Encoder(EncoderConfig(G.num_ws, 16, image_size=16), G.get_latent_avg())
    shipping.save_shipped("encoder", enc, {"config": enc.config.to_dict()}, d)
    model = train_clip.build_model(TINY_CLIP)[0]
    train_clip.export(model, {}, replace(train_clip.RECIPE, steps=0), config=TINY_CLIP, dest=d)
    return d


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
