"""StyleGAN2: rosinality layout, parity with rosinality's outputs, StyleSpace, training on CPU."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hairlib.nets.stylegan2 import (Discriminator, Generator, StyleGAN2Config, infer_generator_config,
                                    load_generator, load_state_dict_strict)

DATA = Path(__file__).parent / "data"
ROS_KEYS = json.loads((DATA / "rosinality_keys.json").read_text())  # recorded from rosinality's model.py


def shapes(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("size", [1024, 256])
def test_state_dict_layout_is_rosinalitys(size):
    assert shapes(Generator(size, 512, 8, 2)) == ROS_KEYS[f"g{size}"]
    assert shapes(Discriminator(size, 2)) == ROS_KEYS[f"d{size}"]


def test_random_1024_rosinality_checkpoint_loads_strictly(tmp_path):
    """A checkpoint written key by key from rosinality's layout (random weights) loads strictly."""
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(*shape, generator=g) for k, shape in ROS_KEYS["g1024"].items()}
    latent_avg = torch.randn(512, generator=g)
    path = tmp_path / "stylegan2-ffhq-config-f.pt"
    torch.save({"g_ema": sd, "latent_avg": latent_avg}, path)
    G = load_generator(path)
    assert G.config == StyleGAN2Config()  # config-f inferred from the shapes
    assert G.num_ws == 18 and len(G.style_layers) == 26
    for k, v in G.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert torch.equal(G.latent_avg[0], latent_avg)
    # StyleSpace of config-f (Wu et al. 2021): 9088 channels in 26 layers, 6048 without ToRGB
    assert sum(l.channels for l in G.style_layers) == 9088
    assert sum(l.channels for l in G.style_layers if not l.is_torgb) == 6048
    assert [l.resolution for l in G.style_layers[:5]] == [4, 4, 8, 8, 8]


def test_256_checkpoint_loads_and_generates(tmp_path):
    g = torch.Generator().manual_seed(1)
    sd = {k: torch.randn(*s, generator=g) * 0.5 for k, s in ROS_KEYS["g256"].items()}
    torch.save({"g_ema": sd}, tmp_path / "g256.pt")
    G = load_generator(tmp_path / "g256.pt")
    assert G.size == 256 and G.num_ws == 14
    with torch.no_grad():
        img = G(torch.randn(1, 512), space="z")
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()


@pytest.fixture(scope="module")
def ref32():
    return load_file(str(DATA / "rosinality_ref_32px.safetensors"))


def test_generator_matches_rosinality_outputs(ref32):
    sd = {k[2:]: v for k, v in ref32.items() if k.startswith("g.")}
    G = load_generator({"g_ema": sd})
    assert G.config.size == 32 and G.config.channel_max == 32 and G.config.n_mlp == 2
    with torch.no_grad():
        assert (G(ref32["z"], space="z") - ref32["img_z"]).abs().max() < 1e-4
        assert (G(ref32["wplus"]) - ref32["img_wplus"]).abs().max() < 1e-4
        trunc = G(ref32["z"], space="z", truncation=0.5, truncation_latent=torch.zeros(1, 32))
        assert (trunc - ref32["img_trunc"]).abs().max() < 1e-4
        # and the outputs are not trivially small
        assert ref32["img_z"].abs().max() > 0.1


def test_discriminator_matches_rosinality_outputs(ref32):
    sd = {k[2:]: v for k, v in ref32.items() if k.startswith("d.")}
    D = Discriminator(StyleGAN2Config(size=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32))
    load_state_dict_strict(D, sd)
    with torch.no_grad():
        assert (D(ref32["x"]) - ref32["d_out"]).abs().max() < 1e-4


def small_cfg():
    return StyleGAN2Config(size=64, style_dim=64, n_mlp=2, channel_multiplier=1, channel_max=64)


def test_64px_forward_backward_and_r1_on_cpu():
    torch.manual_seed(0)
    cfg = small_cfg()
    G, D = Generator(cfg), Discriminator(cfg)
    z = torch.randn(4, cfg.style_dim)
    img = G(z, space="z", noise_mode="random")
    assert img.shape == (4, 3, 64, 64)
    loss = torch.nn.functional.softplus(-D(img)).mean()
    loss.backward()
    for name, p in G.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert G.style[1].weight.grad.abs().sum() > 0 and G.input.input.grad.abs().sum() > 0
    # R1: gradient penalty needs double backward through the ops
    D.zero_grad()
    real = torch.randn(4, 3, 64, 64, requires_grad=True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    grad.pow(2).sum().backward()
    assert D.convs[0][0].weight.grad.abs().sum() > 0
    # path-length regularisation: grad of image w.r.t. W+ with create_graph, then backward
    G.zero_grad()
    wplus = G.to_wplus(torch.randn(2, cfg.style_dim), "z").detach().requires_grad_(True)
    out = G.synthesis(wplus, noise_mode="random")
    (gw,) = torch.autograd.grad((out * torch.randn_like(out)).sum(), wplus, create_graph=True)
    gw.pow(2).sum(2).mean(1).sqrt().mean().backward()
    assert G.convs[0].conv.weight.grad.abs().sum() > 0


def test_deterministic_noise_and_style_space():
    torch.manual_seed(0)
    G = Generator(small_cfg()).eval()
    w = G.to_wplus(torch.randn(2, 64), "z")
    with torch.no_grad():
        a, b = G.synthesis(w), G.synthesis(w)
        assert torch.equal(a, b)  # const noise: same latent, same image
        for n in G.noises.buffers():
            n.normal_()  # noise buffers matter only once their strengths are non-zero
        for m in G.modules():
            if type(m).__name__ == "NoiseInjection":
                m.weight.data.fill_(0.5)
        r1, r2 = G.synthesis(w, noise_mode="random"), G.synthesis(w, noise_mode="random")
        assert (r1 - r2).abs().max() > 1e-3
        S = G.styles(w)
        assert [s.shape[1] for s in S] == [l.channels for l in G.style_layers]
        assert len(S) == 2 + 3 * 4
        assert torch.allclose(G.synthesize_from_styles(S), G.synthesis(w))
        # moving one StyleSpace channel moves the image; moving nothing moves nothing
        S2 = [s.clone() for s in S]
        S2[3][:, 5] += 10.0
        assert (G.synthesize_from_styles(S2) - G.synthesis(w)).abs().max() > 1e-3
        with pytest.raises(ValueError, match="style tensors"):
            G.synthesize_from_styles(S[:-1])


def test_latent_spaces_and_mixing():
    torch.manual_seed(0)
    G = Generator(small_cfg()).eval()
    z = torch.randn(3, 64)
    with torch.no_grad():
        w = G.mapping(z)
        assert torch.allclose(G(z, space="z"), G(w, space="w"))
        assert torch.allclose(G(w, space="w"), G(G.broadcast(w)))
        avg = G.mean_latent(256)
        wt = G.mapping(z, truncation=0.0, truncation_latent=avg)
        assert torch.allclose(wt, avg.expand(3, -1), atol=1e-6)
        mixed = G.mix(w[:1], w[1:2], inject_index=3)
        assert torch.equal(mixed[0, :3], w[0].expand(3, -1)) and torch.equal(mixed[0, 3:], w[1].expand(G.num_ws - 3, -1))
    with pytest.raises(ValueError, match="W\\+ must be"):
        G(torch.randn(2, 64))  # w passed where W+ is expected
    with pytest.raises(ValueError, match="space"):
        G(z, space="s")


def test_bad_checkpoints_give_clear_errors(tmp_path):
    G = Generator(small_cfg())
    sd = G.state_dict()
    missing = {k: v for k, v in sd.items() if k != "conv1.conv.weight"}
    with pytest.raises(ValueError, match="missing keys: conv1.conv.weight"):
        load_state_dict_strict(Generator(small_cfg()), missing)
    wrong = dict(sd)
    wrong["to_rgb1.bias"] = torch.zeros(1, 4, 1, 1)
    with pytest.raises(ValueError, match="shape mismatches: to_rgb1.bias"):
        load_state_dict_strict(Generator(small_cfg()), wrong)
    torch.save({"net": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no generator found"):
        load_generator(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_generator(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="not a rosinality"):
        infer_generator_config({"foo": torch.zeros(1)})
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Config(size=48)
