"""Inversion: optimisation recovers a generator's own images; the encoder recipe runs end to end."""
from dataclasses import replace

import torch

from hairlib.invert import InvertConfig, invert
from hairlib.mini import train_encoder as T
from hairlib.nets.mini_nets import AttributeClassifier, Encoder, EncoderConfig
from hairlib.nets.stylegan2 import Generator, StyleGAN2Config

ARCH = StyleGAN2Config(size=16, style_dim=16, n_mlp=1, channel_multiplier=0.25, channel_max=16)


def tiny_g():
    torch.manual_seed(0)
    return Generator(ARCH).eval().requires_grad_(False)


def test_optimisation_recovers_a_generated_image():
    G = tiny_g()
    with torch.no_grad():
        target = G(torch.randn(3, 16), space="z")
    start = invert(G, target, cfg=InvertConfig(steps=0))
    res = invert(G, target, cfg=InvertConfig(steps=150, lr=0.05))
    assert res.psnr.mean() > start.psnr.mean() + 6  # dB gained
    assert res.losses[-1] < res.losses[0] / 4
    assert res.wplus.shape == (3, G.num_ws, 16)
    assert all(p.grad is None for p in G.parameters())  # nothing accumulates in the generator


def test_encoder_starts_at_the_mean_latent():
    G = tiny_g()
    enc = Encoder(EncoderConfig(G.num_ws, 16, image_size=16), G.get_latent_avg())
    w = enc(torch.randn(2, 3, 16, 16))
    assert torch.allclose(w, G.broadcast(G.get_latent_avg().expand(2, -1)))


def test_encoder_recipe_round_trip(tmp_path):
    G, clf = tiny_g(), AttributeClassifier()
    enc = T.train(G, clf, replace(T.RECIPE, steps=2, batch=4, init=""), tmp_path / "run", progress=False)
    metrics = T.evaluate(G, enc, clf, n=4, refine_steps=2)
    assert metrics["encoder+refine_psnr"] > 0 and 0 <= metrics["encoder_all_labels_kept"] <= 1
    T.export(enc, metrics, replace(T.RECIPE, steps=2), dest=tmp_path / "w")
    back = T.load_shipped_encoder(tmp_path / "w")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(back(x), enc.eval()(x), atol=2e-3)  # shipped in fp16
