"""The StyleGAN2 loop: it learns, it checkpoints atomically, it resumes exactly."""
import json

import pytest
import torch

from hairlib.nets.stylegan2 import StyleGAN2Config
from hairlib.train.checkpoint import load_checkpoint, read_log, save_atomic
from hairlib.train.gan import GANTrainConfig, train_gan

ARCH = StyleGAN2Config(size=8, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)


def red_squares(batch, gen):
    """Toy data: reddish images with a little noise."""
    x = torch.full((batch, 3, 8, 8), -0.8)
    x[:, 0] = 0.8
    return x + 0.05 * torch.randn(x.shape, generator=gen)


def test_short_run_learns_the_colour(tmp_path):
    cfg = GANTrainConfig(arch=ARCH, batch=8, steps=150, lr=0.01, r1=0.1, ckpt_every=1000, log_every=10,
                         ema_kimg=0.05)
    G = train_gan(cfg, red_squares, tmp_path, progress=False)
    with torch.no_grad():
        img = G(torch.randn(64, 16), space="z")
    # the red channel is pushed above the others, as in the data
    assert (img[:, 0].mean() - img[:, 1:].mean()) > 0.5
    log = read_log(tmp_path / "log.jsonl")
    assert log[-1]["step"] == 150 and {"d", "g", "r1", "path"} <= set(log[-1]) | {"r1", "path"}
    assert json.loads((tmp_path / "config.json").read_text())["batch"] == 8


def test_resume_continues_exactly(tmp_path):
    cfg = GANTrainConfig(arch=ARCH, batch=4, steps=6, ckpt_every=3, log_every=1)
    a = train_gan(cfg, red_squares, tmp_path / "a", progress=False)
    # same run in two halves: stop after 3 steps, resume to 6
    train_gan(GANTrainConfig(arch=ARCH, batch=4, steps=3, ckpt_every=3, log_every=1), red_squares, tmp_path / "b",
              progress=False)
    assert load_checkpoint(tmp_path / "b" / "state.pt")["step"] == 3
    b = train_gan(cfg, red_squares, tmp_path / "b", progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k
    # a different architecture in the same folder is refused
    with pytest.raises(ValueError, match="another configuration"):
        train_gan(GANTrainConfig(arch=StyleGAN2Config(size=8, style_dim=8, n_mlp=1, channel_multiplier=1, channel_max=8),
                                 batch=4, steps=7), red_squares, tmp_path / "b", progress=False)


def test_interrupted_run_keeps_its_state(tmp_path):
    calls = {"n": 0}

    def flaky(batch, gen):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return red_squares(batch, gen)

    with pytest.raises(KeyboardInterrupt):
        train_gan(GANTrainConfig(arch=ARCH, batch=4, steps=100, ckpt_every=1000), flaky, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "state.pt")["step"] == 4
    assert not list(tmp_path.glob("*.part"))


def test_atomic_save_falls_back_to_previous(tmp_path):
    p = tmp_path / "s.pt"
    save_atomic({"step": 1}, p)
    save_atomic({"step": 2}, p)
    p.write_bytes(b"truncated")  # a crash that somehow damaged the latest file
    assert load_checkpoint(p)["step"] == 1


def test_simple_fit_learns_and_resumes(tmp_path):
    from hairlib.train.simple import fit

    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    loss_fn = lambda step: ((model(x)[:, 0] - y) ** 2).mean()  # noqa: E731
    assert fit(model, opt, steps=40, lr=0.1, loss_fn=loss_fn, out_dir=tmp_path, progress=False) == 40
    # a longer run in the same folder continues from step 40 and keeps improving
    first = loss_fn(0).item()
    assert fit(model, opt, steps=150, lr=0.1, loss_fn=loss_fn, out_dir=tmp_path, progress=False) == 150
    assert loss_fn(0).item() < min(first, 0.01)
    assert load_checkpoint(tmp_path / "state.pt")["step"] == 150


def test_fit_refuses_to_resume_a_run_of_other_settings(tmp_path):
    """A folder's state.pt resumes only a run with the same metadata, but for the settings a resume
    may change (steps, how often it logs and checkpoints); any other difference is named."""
    from hairlib.train.simple import fit

    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    loss_fn = lambda step: model(torch.ones(2, 3)).pow(2).mean()  # noqa: E731
    meta = {"world": "mini", "cfg": {"id_lambda": 0.3, "steps": 4, "log_every": 1}}
    fit(model, opt, steps=4, lr=0.1, loss_fn=loss_fn, out_dir=tmp_path, progress=False, meta=meta)
    more = {"world": "mini", "cfg": {"id_lambda": 0.3, "steps": 8, "log_every": 2}}
    assert fit(model, opt, steps=8, lr=0.1, loss_fn=loss_fn, out_dir=tmp_path, progress=False, meta=more) == 8
    other = {"world": "mini", "cfg": {"id_lambda": 0.6, "steps": 8, "log_every": 2}}
    with pytest.raises(ValueError, match=r"other settings \(cfg.id_lambda\)"):
        fit(model, opt, steps=12, lr=0.1, loss_fn=loss_fn, out_dir=tmp_path, progress=False, meta=other)
    assert load_checkpoint(tmp_path / "state.pt")["step"] == 8
