"""ArcFace IR-SE50 and e4e encoder: upstream state-dict layouts, checkpoint round trips, behaviour."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hairlib.nets.e4e import E4E, Encoder4Editing, load_e4e
from hairlib.nets.identity import ArcFace, Backbone, load_arcface
from hairlib.nets.stylegan2 import Generator, StyleGAN2Config

DATA = Path(__file__).parent / "data"


def _layout(module):
    return [[k, list(v.shape)] for k, v in module.state_dict().items()]


def _upstream(name):
    d = json.loads((DATA / name).read_text())
    assert d["source"]["repo"] == "omertov/encoder4editing" and d["count"] == len(d["keys"])
    return d["keys"]


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    b = Backbone()
    with torch.no_grad():  # non-trivial BatchNorm statistics so that loading them matters
        for m in b.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return b.eval()


@pytest.fixture(scope="module")
def arcface(backbone, tmp_path_factory):
    path = tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth"
    torch.save(backbone.state_dict(), path)
    return load_arcface(path)


def _face(seed, size=256):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 3, size, size, generator=g) * 2 - 1)


# ---------------------------------------------------------------- (a) upstream layouts

def test_arcface_keys_match_upstream():
    assert _layout(Backbone()) == _upstream("arcface_keys.json")


def test_e4e_encoder_keys_match_upstream():
    assert _layout(Encoder4Editing(50, "ir_se", n_styles=18)) == _upstream("e4e_encoder_keys.json")


# ---------------------------------------------------------------- (b) format round trips

def test_arcface_loads_plain_state_dict(backbone, arcface):
    assert isinstance(arcface, ArcFace) and not arcface.training
    assert not any(p.requires_grad for p in arcface.parameters())
    for k, v in backbone.state_dict().items():
        assert torch.equal(arcface.backbone.state_dict()[k], v), k
    x = _face(1)
    with torch.no_grad():
        ref = backbone(F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], (112, 112)))
    assert torch.allclose(arcface.embed(x), ref, atol=1e-5)


def test_arcface_old_checkpoint_and_wrong_shapes(backbone):
    sd = {k: v for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_arcface(sd)  # PyTorch < 0.4.1 files lack num_batches_tracked
    bad = dict(backbone.state_dict())
    bad["output_layer.3.weight"] = torch.zeros(512, 512 * 14 * 14)
    with pytest.raises(ValueError, match="does not fit"):
        load_arcface(bad)
    with pytest.raises(ValueError, match="does not fit"):
        load_arcface({k: v for k, v in backbone.state_dict().items() if not k.startswith("body.23.")})


@pytest.fixture(scope="module")
def e4e_ckpt(tmp_path_factory):
    torch.manual_seed(1)
    enc = Encoder4Editing(50, "ir_se", n_styles=14).eval()
    gen = Generator(StyleGAN2Config(size=256, style_dim=512, n_mlp=8, channel_multiplier=0.25, channel_max=64))
    ckpt = {"state_dict": {**{"encoder." + k: v for k, v in enc.state_dict().items()},
                           **{"decoder." + k: v for k, v in gen.state_dict().items()}},
            "latent_avg": torch.randn(14, 512), "opts": {"stylegan_size": 256}}
    path = tmp_path_factory.mktemp("e4e") / "e4e_tiny.pt"
    torch.save(ckpt, path)
    return path, ckpt, enc, gen


def test_e4e_checkpoint_round_trip(e4e_ckpt):
    path, ckpt, enc, gen = e4e_ckpt
    e4e, g = load_e4e(path, with_generator=True)
    assert isinstance(e4e, E4E) and e4e.n_styles == 14 and not e4e.training
    assert not any(p.requires_grad for p in e4e.parameters())
    for k, v in gen.state_dict().items():
        assert torch.equal(g.state_dict()[k], v), k
    x = _face(2)
    with torch.no_grad():
        w = e4e(x)
        ref = enc(x) + ckpt["latent_avg"]
        assert w.shape == (1, 14, 512)
        assert torch.allclose(w, ref, atol=1e-4)
        img = g(w)
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()


def test_e4e_resizes_input_and_broadcasts_latent_avg(e4e_ckpt):
    _, ckpt, enc, _ = e4e_ckpt
    one = dict(ckpt, latent_avg=ckpt["latent_avg"][:1])
    e4e = load_e4e(one)
    assert e4e.latent_avg.shape == (1, 512)
    x = _face(3, size=128)
    with torch.no_grad():
        w = e4e(x)
        x256 = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
        assert torch.allclose(w, enc(x256) + ckpt["latent_avg"][:1], atol=1e-4)
    assert w.shape == (1, 14, 512)
    assert load_e4e(dict(ckpt, latent_avg=ckpt["latent_avg"][0])).latent_avg.shape == (1, 512)


def test_e4e_wrong_shapes_raise(e4e_ckpt):
    _, ckpt, _, _ = e4e_ckpt
    with pytest.raises(ValueError, match="does not fit"):
        load_e4e(dict(ckpt, latent_avg=torch.randn(13, 512)))
    with pytest.raises(ValueError, match="does not fit"):
        load_e4e(dict(ckpt, opts={"stylegan_size": 1024}))
    sd = dict(ckpt["state_dict"])
    sd["encoder.latlayer1.weight"] = torch.zeros(512, 128, 1, 1)
    with pytest.raises(ValueError, match="does not fit"):
        load_e4e(dict(ckpt, state_dict=sd))
    small = Generator(StyleGAN2Config(size=64, style_dim=512, n_mlp=2, channel_multiplier=0.25, channel_max=32))
    sd = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("decoder.")}
    sd.update({"decoder." + k: v for k, v in small.state_dict().items()})
    with pytest.raises(ValueError, match="does not fit"):
        load_e4e(dict(ckpt, state_dict=sd), with_generator=True)


# ---------------------------------------------------------------- (c) behaviour

def test_arcface_self_similarity_and_loss(arcface):
    x = torch.cat([_face(4), _face(5)])
    with torch.no_grad():
        assert torch.allclose(arcface.similarity(x, x), torch.ones(2), atol=1e-5)
        e = arcface.embed(x)
        assert e.shape == (2, 512) and torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)
        assert abs(float(arcface.loss(x, x))) < 1e-5
        assert float(arcface.loss(x, x.flip(0))) > 0


def test_arcface_1024_equals_pooled_256(arcface):
    big = _face(6, size=1024)
    with torch.no_grad():
        a = arcface.embed(big)
        b = arcface.embed(torch.nn.AdaptiveAvgPool2d((256, 256))(big))
    assert (a - b).abs().max() < 1e-4
