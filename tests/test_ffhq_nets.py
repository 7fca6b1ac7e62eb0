"""ArcFace IR-SE50 and e4e's encoder: the authors' key layouts and numbers, checkpoint round trips
in the authors' file formats, and behaviour of the identity preprocessing.

The parity references (``data/ffhq_ref.safetensors``) are the authors' modules run on
deterministic weights and inputs; ``data/make_ffhq_fixtures.py`` made them and defines the
weights, which we rebuild here for our modules from the key lists alone.
"""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from hairlib.nets.e4e import E4E, Encoder4Editing, load_e4e
from hairlib.nets.identity import ArcFace, Backbone, load_arcface
from hairlib.nets.stylegan2 import Generator, StyleGAN2Config

DATA = Path(__file__).parent / "data"
PARITY_TOL = 1e-4  # max abs diff against the authors' outputs (values are O(0.1-1))
STYLES_14_TO_17 = tuple(f"styles.{i}." for i in range(14, 18))  # the blocks a 256 px StyleGAN lacks


def _fixture_helpers():
    spec = importlib.util.spec_from_file_location("make_ffhq_fixtures", DATA / "make_ffhq_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines helpers only; main() needs the authors' code
    return module


FX = _fixture_helpers()
REF = load_file(str(DATA / "ffhq_ref.safetensors"))


def _meta(cls, **kwargs):
    """The module's layout without allocating or initialising its weights."""
    with torch.device("meta"):
        return cls(**kwargs)


def _layout(module):
    return [[k, list(v.shape)] for k, v in module.state_dict().items()]


def _upstream(name):
    d = json.loads((DATA / name).read_text())
    assert d["source"]["repo"] == "omertov/encoder4editing" and d["count"] == len(d["keys"])
    return d["keys"]


def _deterministic(module, probe_key):
    sd = FX.deterministic_state_dict(module.state_dict())
    # the references were made from these very numbers (else PyTorch's random streams changed)
    assert torch.allclose(FX.weight_probe(sd), REF[probe_key], rtol=1e-9, atol=1e-6)
    return sd


def _images(n, size, seed, probe_key=None):
    x = FX.deterministic_images(n, size, seed)
    if probe_key:
        assert torch.equal(x.flatten()[:16], REF[probe_key])
    return x


def _smooth_face(seed, size=256):
    """A smooth random image in [-1, 1] (16x16 noise upsampled): shifts change it only a little."""
    low = FX.deterministic_images(1, 16, seed)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


# ---------------------------------------------------------------- layouts

def test_arcface_keys_match_upstream():
    assert _layout(_meta(Backbone)) == _upstream("arcface_keys.json")


def test_e4e_encoder_keys_match_upstream():
    keys = _upstream("e4e_encoder_keys.json")
    assert _layout(_meta(Encoder4Editing, n_styles=18)) == keys
    # a 256 px StyleGAN (14 W+ rows) has the first 14 style blocks only
    assert _layout(_meta(Encoder4Editing, n_styles=14)) == [kv for kv in keys if not kv[0].startswith(STYLES_14_TO_17)]


# ---------------------------------------------------------------- ArcFace: model_ir_se50.pth

@pytest.fixture(scope="module")
def arcface_sd():
    return _deterministic(_meta(Backbone), "arcface_weight_probe")


@pytest.fixture(scope="module")
def arcface(arcface_sd, tmp_path_factory):
    """Deterministic weights written as the authors' file: a plain state dict."""
    path = tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth"
    torch.save(arcface_sd, path)
    return load_arcface(path)


def test_arcface_loads_frozen_and_matches_upstream(arcface, arcface_sd):
    assert isinstance(arcface, ArcFace) and not arcface.training
    assert not any(p.requires_grad for p in arcface.parameters())
    arcface.train()
    assert not arcface.training  # BatchNorm statistics and dropout stay fixed
    for k, v in arcface.backbone.state_dict().items():
        assert torch.equal(v, arcface_sd[k]), k
    with torch.no_grad():
        emb = arcface.backbone(_images(2, 112, FX.SEEDS["arcface_112"], "arcface_input_probe"))
        emb_1024 = arcface.embed(_images(1, 1024, FX.SEEDS["arcface_1024"], "arcface_1024_input_probe"))
    assert (emb - REF["arcface_emb"]).abs().max() < PARITY_TOL
    # the whole id-loss path: pool 1024 -> 256, crop, pool -> 112, backbone
    assert (emb_1024 - REF["arcface_emb_1024"]).abs().max() < PARITY_TOL
    # the two references differ: the comparison has teeth
    assert float(REF["arcface_emb"][0] @ REF["arcface_emb"][1]) < 0.9


def test_arcface_old_checkpoints_and_wrong_shapes(arcface_sd):
    old = {k: v for k, v in arcface_sd.items() if not k.endswith("num_batches_tracked")}
    load_arcface(old)  # files written by PyTorch < 0.4.1 lack num_batches_tracked
    bad = dict(arcface_sd, **{"output_layer.3.weight": torch.zeros(512, 512 * 14 * 14)})
    with pytest.raises(ValueError, match=r"shape mismatches: output_layer\.3\.weight"):
        load_arcface(bad)
    with pytest.raises(ValueError, match=r"missing keys: body\.23\."):
        load_arcface({k: v for k, v in arcface_sd.items() if not k.startswith("body.23.")})


def test_arcface_unreadable_file_is_a_value_error(tmp_path):
    path = tmp_path / "model_ir_se50.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_arcface(path)


# ---------------------------------------------------------------- ArcFace: behaviour

def test_identity_of_an_image_with_itself(arcface):
    x = torch.cat([_smooth_face(1), _smooth_face(2)])
    with torch.no_grad():
        e = arcface.embed(x)
        assert e.shape == (2, 512) and torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)
        assert torch.allclose(arcface.similarity(x, x), torch.ones(2), atol=1e-5)
        assert abs(float(arcface.loss(x, x))) < 1e-5


def test_shifted_and_noisy_copies_are_closer_than_another_face(arcface):
    """Random weights know no faces, but the crop/pool path must keep small image changes small.
    (No flip test: without training nothing makes the embedding mirror-invariant.)"""
    faces = torch.cat([_smooth_face(s) for s in (10, 11, 12)])
    others = torch.cat([_smooth_face(s) for s in (20, 21, 22)])
    noise = 0.1 * FX.deterministic_images(3, 256, 30)
    with torch.no_grad():
        s_shift = arcface.similarity(faces, faces.roll(4, dims=-1))
        s_noise = arcface.similarity(faces, faces + noise)
        s_other = arcface.similarity(faces, others)
    assert (s_shift > s_other + 0.1).all(), (s_shift, s_other)
    assert (s_noise > s_other + 0.1).all(), (s_noise, s_other)


def test_only_the_face_crop_is_seen(arcface):
    """pSp's crop [35:223, 32:220] of a 256 px face (x4 at 1024 px): pixels outside do not count."""
    for size in (256, 1024):
        x = _smooth_face(40, size)
        k = size // 256
        outside, inside = x.clone(), x.clone()
        outside[:, :, :35 * k] = 1.0
        outside[:, :, :, 220 * k:] = -1.0
        inside[:, :, 100 * k:150 * k, 100 * k:150 * k] = 1.0
        with torch.no_grad():
            assert torch.equal(arcface.embed(outside), arcface.embed(x))
            assert float(arcface.similarity(inside, x)) < 0.999


def test_1024_input_is_pooled_to_256(arcface):
    big = _smooth_face(50, 1024) + 0.2 * FX.deterministic_images(1, 1024, 51)
    with torch.no_grad():
        a = arcface.embed(big)
        b = arcface.embed(F.avg_pool2d(big, 4))
    assert (a - b).abs().max() < 1e-5


def test_identity_loss_is_mean_one_minus_cos_and_trains_only_y_hat(arcface):
    y_hat = torch.cat([_smooth_face(60), _smooth_face(61)]).requires_grad_(True)
    y = torch.cat([_smooth_face(62), _smooth_face(63)]).requires_grad_(True)
    loss = arcface.loss(y_hat, y)
    with torch.no_grad():
        expected = (1 - arcface.similarity(y_hat, y)).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert y_hat.grad is not None and y_hat.grad.abs().sum() > 0
    assert y.grad is None  # the target's embedding is detached, as in the papers


# ---------------------------------------------------------------- e4e: e4e_ffhq_encode.pt

@pytest.fixture(scope="module")
def e4e_sd():
    """Deterministic weights of the 1024 px encoder (18 styles), keys without the 'encoder.' prefix."""
    return _deterministic(_meta(Encoder4Editing, n_styles=18), "e4e_weight_probe")


@pytest.fixture(scope="module")
def x256():
    return _images(1, 256, FX.SEEDS["e4e_256"], "e4e_input_probe")


def test_e4e_matches_upstream(e4e_sd, x256):
    ckpt = {"state_dict": {"encoder." + k: v for k, v in e4e_sd.items()},  # no decoder needed to encode
            "latent_avg": torch.zeros(18, 512), "opts": {"stylegan_size": 1024}}
    e4e = load_e4e(ckpt)
    assert e4e.n_styles == 18
    with torch.no_grad():
        codes = e4e(x256)
    assert codes.shape == (1, 18, 512)
    assert (codes - REF["e4e_codes"]).abs().max() < PARITY_TOL
    assert REF["e4e_codes"].std() > 0.1 and (REF["e4e_codes"][0, 1:] - REF["e4e_codes"][0, :1]).abs().max() > 0.1


LATENT_ROW = torch.randn(512, generator=torch.Generator().manual_seed(70))


@pytest.fixture(scope="module")
def e4e_256_ckpt(e4e_sd, tmp_path_factory):
    """An e4e checkpoint for a 256 px StyleGAN (14 styles) in the authors' format, on disk, with a
    small rosinality generator as the decoder; the encoder is the first 14 style blocks of e4e_sd."""
    torch.manual_seed(71)
    gen = Generator(StyleGAN2Config(size=256, style_dim=512, n_mlp=8, channel_multiplier=0.25, channel_max=64))
    enc = {k: v for k, v in e4e_sd.items() if not k.startswith(STYLES_14_TO_17)}
    ckpt = {"state_dict": {**{"encoder." + k: v for k, v in enc.items()},
                           **{"decoder." + k: v for k, v in gen.state_dict().items()}},
            "latent_avg": LATENT_ROW.repeat(14, 1),  # [n_styles, 512]: the w average repeated, as e4e saves it
            # vars() of the authors' training options: plain values only
            "opts": {"exp_dir": "experiment", "dataset_type": "ffhq_encode", "encoder_type": "Encoder4Editing",
                     "start_from_latent_avg": True, "stylegan_size": 256, "lpips_type": "alex", "id_lambda": 0.5,
                     "progressive_steps": [0, 20000, 22000], "checkpoint_path": None, "device": "cuda:0"}}
    path = tmp_path_factory.mktemp("e4e") / "e4e_ffhq_encode.pt"
    torch.save(ckpt, path)
    return path, ckpt, gen


@pytest.fixture(scope="module")
def e4e_256(e4e_256_ckpt):
    path, _, _ = e4e_256_ckpt
    return load_e4e(path, with_generator=True)  # torch.load(weights_only=True) inside


def test_e4e_checkpoint_round_trip_to_images(e4e_256, e4e_256_ckpt, x256):
    _, _, gen = e4e_256_ckpt
    e4e, g = e4e_256
    assert isinstance(e4e, E4E) and e4e.n_styles == 14 and not e4e.training
    assert not any(p.requires_grad for p in e4e.parameters())
    for k, v in gen.state_dict().items():
        assert torch.equal(g.state_dict()[k], v), k
    assert torch.equal(g.get_latent_avg()[0], LATENT_ROW)
    with torch.no_grad():
        w = e4e(x256)
        img = g(w)
    assert w.shape == (1, 14, 512)
    # W+ = encoder(x) + latent_avg, with the authors' encoder outputs
    assert (w - (REF["e4e_codes"][:, :14] + LATENT_ROW)).abs().max() < PARITY_TOL
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()


class _RecordingEncoder(nn.Module):
    """Stands in for Encoder4Editing: records its input, returns zero codes."""
    style_count = 14

    def forward(self, x):
        self.seen = x
        return torch.zeros(x.shape[0], self.style_count, 512)


@pytest.mark.parametrize("size", [128, 256, 512, 1024])
def test_e4e_resizes_inputs_to_256(size):
    la = LATENT_ROW.repeat(14, 1)
    e4e = E4E(_RecordingEncoder(), la)
    x = FX.deterministic_images(2, size, 80)
    w = e4e(x)
    expected = x if size == 256 else F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False,
                                                   antialias=True)
    assert torch.equal(e4e.encoder.seen, expected)
    assert w.shape == (2, 14, 512) and torch.equal(w, la.expand(2, 14, 512))


def test_e4e_latent_avg_shapes():
    for la in (LATENT_ROW, LATENT_ROW[None], LATENT_ROW.repeat(14, 1)):
        w = E4E(_RecordingEncoder(), la)(torch.zeros(1, 3, 256, 256))
        assert torch.equal(w, LATENT_ROW.expand(1, 14, 512))
    with pytest.raises(ValueError, match="does not fit"):
        E4E(_RecordingEncoder(), torch.zeros(13, 512))


def test_encoder_refuses_other_sizes(e4e_256):
    with pytest.raises(ValueError, match="256"):
        e4e_256[0].encoder(torch.zeros(1, 3, 128, 128))


def test_e4e_wrong_checkpoints_raise(e4e_256_ckpt, tmp_path):
    _, ckpt, _ = e4e_256_ckpt
    with pytest.raises(ValueError, match="stylegan_size=1024"):
        load_e4e(dict(ckpt, opts={"stylegan_size": 1024}))
    sd = dict(ckpt["state_dict"], **{"encoder.latlayer1.weight": torch.zeros(512, 128, 1, 1)})
    with pytest.raises(ValueError, match=r"shape mismatches: latlayer1\.weight"):
        load_e4e(dict(ckpt, state_dict=sd))
    sd = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("encoder.body.23.")}
    with pytest.raises(ValueError, match=r"missing keys: body\.23\."):
        load_e4e(dict(ckpt, state_dict=sd))
    with pytest.raises(ValueError, match="latent_avg"):
        load_e4e({k: v for k, v in ckpt.items() if k != "latent_avg"})
    small = Generator(StyleGAN2Config(size=64, style_dim=512, n_mlp=2, channel_multiplier=0.25, channel_max=32))
    sd = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("decoder.")}
    sd.update({"decoder." + k: v for k, v in small.state_dict().items()})
    with pytest.raises(ValueError, match="does not fit"):
        load_e4e(dict(ckpt, state_dict=sd), with_generator=True)
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_e4e(path)
