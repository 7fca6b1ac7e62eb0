"""The reconstruction-anchored sharpening stage: it learns, keeps the mapping, resumes exactly."""
from dataclasses import replace

import pytest
import torch

from hairlib.nets.mini_nets import Encoder, EncoderConfig
from hairlib.nets.stylegan2 import Discriminator, Generator, StyleGAN2Config
from hairlib.train.checkpoint import load_checkpoint, read_log
from hairlib.train.sharpen import SharpenConfig, adaptive_weight, sharpen

ARCH = StyleGAN2Config(size=8, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
CFG = SharpenConfig(steps=6, batch=4, samples=2, d_warmup=2, lr=0.01, ckpt_every=3, log_every=1)


def squares(step: int) -> torch.Tensor:
    """Toy renders: half red, half blue squares on grey, a pure function of the step."""
    g = torch.Generator().manual_seed(step)
    x = torch.full((4, 3, 8, 8), -0.2) + 0.02 * torch.randn(4, 3, 8, 8, generator=g)
    x[:2, 0, 2:6, 2:6] = 0.9
    x[2:, 2, 2:6, 2:6] = 0.9
    return x


def nets(seed=0):
    torch.manual_seed(seed)
    G, D = Generator(ARCH), Discriminator(ARCH)
    enc = Encoder(EncoderConfig(G.num_ws, ARCH.style_dim, widths=(4, 8), image_size=8), G.get_latent_avg())
    torch.nn.init.normal_(enc.head.weight, std=0.05)  # codes that tell the two kinds apart
    return G, D, enc


def test_adaptive_weight_is_the_ratio_of_gradient_norms():
    last = torch.tensor([1.0, 2.0], requires_grad=True)
    rec, adv = (3 * last).sum(), (last ** 2).sum()  # grads [3, 3] and [2, 4]
    lam = adaptive_weight(rec, adv, last)
    assert lam.item() == pytest.approx((18 ** 0.5) / (20 ** 0.5 + 1e-4), rel=1e-5) and not lam.requires_grad
    assert adaptive_weight(rec, adv, last, clamp=0.5).item() == 0.5


def test_sharpening_reconstructs_and_leaves_the_mapping_alone(tmp_path):
    G, D, enc = nets()
    mapping = {k: v.clone() for k, v in G.style.state_dict().items()}
    with torch.no_grad():
        before = (G.synthesis(enc(squares(10 ** 6))) - squares(10 ** 6)).abs().mean()
    G_ema = sharpen(G, D, enc, squares, replace(CFG, steps=120, ema_kimg=0.01, ckpt_every=1000, log_every=20),
                    tmp_path, progress=False, held=squares(10 ** 6))
    with torch.no_grad():
        after = (G_ema.synthesis(enc(squares(10 ** 6))) - squares(10 ** 6)).abs().mean()
    assert after < 0.6 * before  # the anchor: renders are reconstructed through the frozen encoder
    assert all(torch.equal(mapping[k], v) for k, v in G_ema.style.state_dict().items())
    log = read_log(tmp_path / "log.jsonl")
    assert {"d", "g", "lam", "l1", "psnr_heldout", "r1"} <= set(log[-1]) and log[-1]["step"] == 120
    assert log[-1]["psnr_heldout"] > log[0]["psnr_heldout"]
    assert not list(tmp_path.glob("*.part"))


def test_resume_continues_exactly_and_other_configs_are_refused(tmp_path):
    a = sharpen(*nets(), squares, CFG, tmp_path / "a", progress=False)
    sharpen(*nets(), squares, replace(CFG, steps=3), tmp_path / "b", progress=False)
    assert load_checkpoint(tmp_path / "b" / "state.pt")["step"] == 3
    b = sharpen(*nets(), squares, CFG, tmp_path / "b", progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k
    with pytest.raises(ValueError, match="another configuration"):
        sharpen(*nets(), squares, replace(CFG, steps=9, adv_weight=2.0), tmp_path / "b", progress=False)


def test_an_interrupted_run_keeps_its_state(tmp_path):
    calls = {"n": 0}

    def flaky(step):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return squares(step)

    with pytest.raises(KeyboardInterrupt):
        sharpen(*nets(), flaky, replace(CFG, steps=100, ckpt_every=1000), tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "state.pt")["step"] == 4
