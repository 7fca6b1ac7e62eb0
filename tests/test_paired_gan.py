"""The paired StyleGAN2 recipe (hairlib.train.paired_gan): G(z) learns the image z stands for."""
import json
from dataclasses import replace

import pytest
import torch

from hairlib.nets.stylegan2 import StyleGAN2Config
from hairlib.train.paired_gan import PairedGANConfig, mixed_wplus, train_paired_gan

TINY = PairedGANConfig(arch=StyleGAN2Config(size=16, style_dim=16, n_mlp=2, channel_multiplier=0.125, channel_max=16),
                       batch=8, steps=6, lr=0.01, ckpt_every=3, log_every=1, sample_every=1000, seed=1)


def toy_pairs(start=0, seed=0):
    """z -> an image that is a fixed function of z: its first coordinate's sign paints the left
    half white or black (a step, as a hairstyle is), the rest mid-gray."""
    k = start
    while True:
        z = torch.randn(8, 16, generator=torch.Generator().manual_seed(seed * 1000 + k))
        img = torch.zeros(8, 3, 16, 16)
        img[:, :, :, :8] = torch.where(z[:, :1, None, None] > 0, 1.0, -1.0)
        yield {"z": z, "images": img}
        k += 1


def l1(fake, real):
    return (fake - real).abs().flatten(1).mean(1)


def test_mixing_crosses_only_the_mixed_rows():
    from hairlib.nets.stylegan2 import Generator

    G = Generator(TINY.arch)
    z = torch.randn(64, 16)
    w, unmixed = mixed_wplus(G, z, 0.5, torch.Generator().manual_seed(0))
    plain = G.broadcast(G.mapping(z))
    assert torch.allclose(w[unmixed], plain[unmixed])
    assert 10 < int((~unmixed).sum()) < 54
    assert not torch.allclose(w[~unmixed][:, -1], plain[~unmixed][:, -1])
    assert torch.allclose(w[~unmixed][:, 0], plain[~unmixed][:, 0])  # the cut is at row >= 1


def test_the_pairs_teach_the_step_and_a_run_resumes(tmp_path):
    cfg = replace(TINY, steps=300, lr=0.002, pair_weight=10.0, ckpt_every=100, ema_kimg=0.05)
    G, step = train_paired_gan(cfg, toy_pairs(), l1, tmp_path / "run", progress=False)
    assert step == 300
    z = torch.randn(256, 16, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        left = G(z, space="z")[:, :, :, :8].mean((1, 2, 3))
    sign_ok = ((left > 0) == (z[:, 0] > 0)).float().mean().item()
    assert sign_ok > 0.7, sign_ok  # held-out z: the generator draws the half its z stands for (untrained: 0.5)
    log = [line for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 300
    # a longer run resumes from the checkpoint (not from scratch), counting its seconds on
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    G2, step2 = train_paired_gan(replace(cfg, steps=302), toy_pairs(start=300), l1, tmp_path / "run", progress=False)
    assert step2 == 302
    assert torch.load(tmp_path / "run" / "state.pt", weights_only=False)["seconds"] > state["seconds"]


def toy_features(z):
    """The toy pairs' "face parameters": which half the image paints white, one-hot."""
    return torch.stack([(z[:, 0] > 0).float(), (z[:, 0] <= 0).float()], 1)


def anchored_pairs(start=0):
    for item in toy_pairs(start):
        yield {**item, "features": toy_features(item["z"])}


def test_anchored_codes_teach_the_mapping_which_face_z_stands_for(tmp_path):
    cfg = replace(TINY, arch=replace(TINY.arch, lr_mlp=0.5), steps=300, lr=0.002, pair_weight=10.0, ckpt_every=100,
                  ema_kimg=0.05, anchor_layers=2, anchor_batch=64)
    G, step = train_paired_gan(cfg, anchored_pairs(), l1, tmp_path / "run", progress=False, features=toy_features)
    z = torch.randn(256, 16, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        left = G(z, space="z")[:, :, :, :8].mean((1, 2, 3))  # sampling goes through the mapping, not the codes
    sign_ok = ((left > 0) == (z[:, 0] > 0)).float().mean().item()
    assert sign_ok > 0.75, sign_ok  # untrained: 0.5 (the synthesis alone, from the codes: 1.0)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["anchor"] < 0.5 * log[0]["anchor"]
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    assert {"A", "a_opt", "m_opt"} <= set(state)
    with pytest.raises(ValueError, match="features"):
        train_paired_gan(cfg, anchored_pairs(), l1, tmp_path / "other", progress=False)


def test_fit_mapping_regresses_onto_frozen_codes():
    from hairlib.nets.stylegan2 import Generator
    from hairlib.train.paired_gan import CodeNetwork, fit_mapping

    torch.manual_seed(0)
    G = Generator(replace(TINY.arch, n_mlp=2, lr_mlp=1.0))
    A = CodeNetwork(2, 16, 2)
    before = fit_mapping(G, A, toy_features, steps=1, batch=64, bank=4096, progress=False)
    fit = fit_mapping(G, A, toy_features, steps=2000, batch=256, bank=4096, progress=False)
    assert fit["r2"] > 0.85 > 0.5 > before["r2"], (before, fit)  # a step in z[:, 0]: sharp, so slow to fit
    assert all(not p.requires_grad for p in G.parameters())


def test_projection_discriminator_starts_as_the_unconditional_one():
    from hairlib.nets.stylegan2 import Discriminator

    torch.manual_seed(0)
    plain = Discriminator(TINY.arch)
    cond = Discriminator(TINY.arch, condition_dim=2)
    missing, unexpected = cond.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["embed.weight"] and not unexpected
    x, c = torch.randn(8, 3, 16, 16), toy_features(torch.randn(8, 16))
    with torch.no_grad():
        assert torch.allclose(cond(x, condition=c), plain(x), atol=1e-6)  # zero embedding
        cond.embed.weight.normal_()
        assert not torch.allclose(cond(x, condition=c), plain(x), atol=1e-3)
        assert torch.allclose(cond(x, condition=torch.zeros_like(c)), plain(x), atol=1e-6)  # no condition


def test_an_unconditional_run_continues_with_the_projection_discriminator(tmp_path):
    cfg = replace(TINY, arch=replace(TINY.arch, lr_mlp=0.5), steps=6, anchor_layers=2, anchor_batch=16)
    train_paired_gan(cfg, anchored_pairs(), l1, tmp_path / "run", progress=False, features=toy_features)
    before = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    assert "embed.weight" not in before["D"] and before["config"]["projection_from"] == -1
    later = replace(cfg, steps=12, projection_from=6)
    _, step = train_paired_gan(later, anchored_pairs(6), l1, tmp_path / "run", progress=False, features=toy_features)
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    assert step == 12 and state["config"]["projection_from"] == 6
    assert state["D"]["embed.weight"].abs().sum() > 0  # the conditional term learned from step 6 on
    with pytest.raises(ValueError, match="another configuration"):  # past its switch, a run keeps its recipe
        train_paired_gan(replace(later, projection_from=9), anchored_pairs(12), l1, tmp_path / "run",
                         progress=False, features=toy_features)
    with pytest.raises(ValueError, match="anchor_layers"):
        train_paired_gan(replace(TINY, projection_from=0), toy_pairs(), l1, tmp_path / "plain", progress=False)
