"""Refitting the mapping network of a frozen synthesis (train_stylegan2 --stage remap)."""
from dataclasses import replace

import torch

from hairlib.nets.mini_nets import Encoder, EncoderConfig
from hairlib.nets.stylegan2 import Generator, StyleGAN2Config
from hairlib.train.checkpoint import read_log
from hairlib.train.warmstart import WarmStartConfig, train_w_encoder
from test_sharpen import squares  # toy renders, a pure function of the step

ARCH = StyleGAN2Config(size=8, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)


def test_w_encoder_learns_against_a_frozen_synthesis_and_never_sees_the_held_batch(tmp_path):
    torch.manual_seed(0)
    G = Generator(ARCH)
    synthesis = {k: v.clone() for k, v in G.state_dict().items()}
    held = squares(10 ** 6) + 0.5  # another distribution: BatchNorm would notice it
    encoders = []
    for name, h in (("with_held", held), ("without", None)):
        torch.manual_seed(1)
        E = Encoder(EncoderConfig(1, ARCH.style_dim, widths=(4, 8), image_size=8), G.get_latent_avg())
        with torch.no_grad():
            before = (G.synthesis(G.broadcast(E(squares(7))[:, 0])) - squares(7)).abs().mean()
        train_w_encoder(G, E, squares, None, steps=60, lr=0.01, feature_weight=0.0, out_dir=tmp_path / name,
                        progress=False, held=h, log_every=10)
        encoders.append(E)
    with torch.no_grad():
        after = (G.synthesis(G.broadcast(E(squares(7))[:, 0])) - squares(7)).abs().mean()
    assert after < 0.7 * before
    assert all(torch.equal(synthesis[k], v) for k, v in G.state_dict().items())  # G is only read
    a, b = (dict(e.state_dict()) for e in encoders)
    assert all(torch.equal(a[k], b[k]) for k in a)  # logging the held batch changed nothing, BN statistics included
    log = read_log(tmp_path / "with_held" / "log.jsonl")
    assert "psnr" in log[-1] and log[-1]["step"] == 60


def test_remap_keeps_the_shipped_synthesis_and_refits_the_mapping(tmp_path):
    from hairlib.mini import train_stylegan2 as T

    cfg = replace(T.REMAP, encoder_steps=3, batch=4, eval_n=40,
                  mapping=WarmStartConfig(seed=5, map_steps=3, map_batch=64, map_bank=64, map_lr=0.1, ckpt_every=2))
    metrics = T.remap_shipped(tmp_path / "remap", progress=False, cfg=cfg)
    assert set(metrics) >= {"kid_samples_vs_renders", "within_5_points", "max_frequency_gap"}
    path = T.export(tmp_path, dest=tmp_path / "ship", source="remap")
    G = T.load_generator(tmp_path / "ship")
    shipped = T.load_generator()
    new, old = G.state_dict(), shipped.state_dict()
    assert all(torch.equal(new[k], old[k]) for k in old if not k.startswith("style."))
    assert any(not torch.equal(new[k], old[k]) for k in old if k.startswith("style."))
    import json

    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["remap"]["encoder_steps"] == 3 and "before_remap" in meta and "--stage remap" in meta["command"]
    assert T.remap_shipped(tmp_path / "remap", progress=False, cfg=cfg) == metrics  # done: read back, not rerun
