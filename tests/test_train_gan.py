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


def test_a_zero_time_budget_trains_nothing(tmp_path):
    cfg = GANTrainConfig(arch=ARCH, batch=4, steps=6, ckpt_every=3, log_every=1)
    train_gan(GANTrainConfig(arch=ARCH, batch=4, steps=3, ckpt_every=3, log_every=1), red_squares, tmp_path,
              progress=False)
    before = load_checkpoint(tmp_path / "state.pt")
    # staging a run as it stands (``--hours 0``): no step taken, the state is the same
    train_gan(cfg, red_squares, tmp_path, progress=False, max_seconds=0.0)
    after = load_checkpoint(tmp_path / "state.pt")
    assert after["step"] == 3
    for k, v in before["G"].items():
        assert torch.equal(v, after["G"][k]), k


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


def test_a_packed_state_unpacks_to_the_same_run_and_refuses_a_damaged_file(tmp_path):
    from hairlib.train.checkpoint import pack_checkpoint, unpack_checkpoint

    net = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.0, 0.99))
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 4)).square().sum().backward()
        opt.step()
    state = {"config": {"lr": 0.01, "arch": {"size": 4}}, "net": net.state_dict(), "opt": opt.state_dict(), "step": 3,
             "rng": torch.Generator().manual_seed(1).get_state(), "seconds": 1.5}
    pack_checkpoint(state, tmp_path / "packed")
    assert unpack_checkpoint(tmp_path / "nothing") is None
    back = unpack_checkpoint(tmp_path / "packed")
    assert back["step"] == 3 and back["seconds"] == 1.5 and back["config"] == state["config"]
    assert all(torch.equal(back["net"][k], v) for k, v in state["net"].items())
    assert torch.equal(back["rng"], state["rng"])
    # beta1 = 0: the first moments are not kept, and the next step is the same as the run's own
    x = torch.randn(5, 4)
    net2 = torch.nn.Linear(4, 3)
    net2.load_state_dict(back["net"])
    opt2 = torch.optim.Adam(net2.parameters(), lr=0.01, betas=(0.0, 0.99))
    opt2.load_state_dict(back["opt"])
    for n, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        n(x).square().sum().backward()
        o.step()
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(net.parameters(), net2.parameters()))
    f = tmp_path / "packed" / "net.safetensors"
    f.write_bytes(f.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(RuntimeError, match="sha256"):
        unpack_checkpoint(tmp_path / "packed")
