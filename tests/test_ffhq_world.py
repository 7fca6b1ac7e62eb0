"""load_world("ffhq") end to end, offline, on stand-in checkpoints in the authors' formats.

The registry's published sizes and checksums refuse any file but the real one, so the test
points each entry at its stand-in (``WeightSpec`` with the stand-in's size and sha256): the
same path a real cache takes, checksum verification included. The generator is a 256 px
rosinality checkpoint with narrow layers (its shape is read from the file); ArcFace IR-SE50 and
HairCLIP's parsenet have their real architectures and random weights. CLIP ViT-B/32 (350 MB) is
the one stand-in that is not in the file's format: its loader is tested on its own
(tests/test_clip.py), here a tiny CLIP takes its place.
"""
import dataclasses

import pytest
import torch

import hairlib
from hairlib import weights


def _pin(monkeypatch, name, path):
    spec = weights.REGISTRY[name]
    monkeypatch.setitem(weights.REGISTRY, name, dataclasses.replace(
        spec, size=path.stat().st_size, sha256=weights.sha256_file(path)))


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    from hairlib.nets.identity import Backbone
    from hairlib.nets.parser import ParseNet
    from hairlib.nets.stylegan2 import Generator, StyleGAN2Config

    d = tmp_path_factory.mktemp("ffhq_cache")
    torch.manual_seed(0)
    G = Generator(StyleGAN2Config(size=256, style_dim=32, n_mlp=2, channel_multiplier=0.25, channel_max=16))
    g_sd = G.state_dict()
    torch.save({"g_ema": g_sd, "latent_avg": torch.zeros(32)}, d / weights.REGISTRY["stylegan2-ffhq-256"].filename)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in Backbone().state_dict().items()},
               d / weights.REGISTRY["arcface-ir-se50"].filename)
    torch.save(ParseNet().state_dict(), d / weights.REGISTRY["face-parser"].filename)
    (d / weights.REGISTRY["clip-vit-b32"].filename).write_bytes(b"stand-in")
    return d


@pytest.fixture
def ffhq_home(standins, tmp_path, monkeypatch):
    import shutil

    from hairlib import worlds
    from hairlib.nets import clip as clip_mod

    home = tmp_path / "home"
    shutil.copytree(standins, home / "weights")
    monkeypatch.setenv("HAIRLIB_HOME", str(home))
    monkeypatch.setenv("HAIRLIB_OFFLINE", "1")
    assert weights.cache_dir() == home / "weights"
    for name in ("stylegan2-ffhq-256", "arcface-ir-se50", "face-parser", "clip-vit-b32"):
        _pin(monkeypatch, name, weights.local_path(name))
    from tests.conftest import TINY_CLIP

    tiny = clip_mod.build_model(TINY_CLIP)[0]
    real_load = clip_mod.load_clip
    monkeypatch.setattr(worlds, "load_clip", lambda name, device="cpu", **kw: real_load(
        "tiny", device, config=TINY_CLIP, state_dict=tiny.state_dict()))
    return home


def test_ffhq_world_from_photo_to_edit(ffhq_home):
    from skimage import data

    world = hairlib.load_world("ffhq", resolution=256)
    assert world.name == "ffhq" and world.resolution == 256 and world.encoder is None
    for f in world.generator.parameters():
        assert not f.requires_grad
    x = world.align(data.astronaut())  # dlib FFHQ alignment
    assert x.shape == (1, 3, 256, 256) and -1 <= x.min() and x.max() <= 1
    res = world.invert(x, steps=2, full=True)  # no e4e at 256 px: optimisation from the mean latent
    assert res.wplus.shape == (1, world.generator.num_ws, 32) and torch.isfinite(res.wplus).all()
    img = world.generate(res.wplus)
    masks = world.masks(img)
    assert set(masks) >= {"hair", "background"} and masks["hair"].shape == (1, 1, 256, 256)
    sim = world.identity_similarity(img, img)
    assert sim.item() == pytest.approx(1.0, abs=1e-4)
    r = hairlib.edit(world, res.wplus, "curly hair", method="optimize", steps=2)
    assert r.images.shape == (1, 3, 256, 256) and r.method == "optimize"
    assert len(world.vocab["hairstyles"]) == 44 and len(world.vocab["hair_colors"]) == 12


def test_a_corrupted_cache_file_is_refused(ffhq_home):
    path = weights.local_path("face-parser")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    with pytest.raises(weights.ChecksumError, match="face-parser"):
        hairlib.load_world("ffhq", resolution=256)


def test_offline_without_weights_names_every_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HAIRLIB_HOME", str(tmp_path))
    monkeypatch.setenv("HAIRLIB_OFFLINE", "1")
    with pytest.raises(weights.WeightsMissingError) as e:
        hairlib.load_world("ffhq", resolution=1024)
    for name in ("stylegan2-ffhq-1024", "e4e-ffhq", "arcface-ir-se50", "face-parser", "clip-vit-b32"):
        assert name in str(e.value)
    assert "hairlib fetch" in str(e.value)
    with pytest.raises(ValueError, match="1024 px"):
        hairlib.load_world("ffhq", resolution=512)


def _styleclip_clip_loss(model, tokens, image, clip_size):
    """StyleCLIP's ``criteria/clip_loss.py`` CLIPLoss, as the authors write it: nearest upsampling
    x7, AvgPool2d(stylegan_size // 32) (for CLIP's 224 px input; ``size * 7 // clip_size`` in
    general), the raw [-1, 1] image into CLIP, ``1 - logits_per_image / 100``."""
    image = torch.nn.AvgPool2d(image.shape[-1] * 7 // clip_size)(torch.nn.Upsample(scale_factor=7)(image))
    img = torch.nn.functional.normalize(model.encode_image(image), dim=-1)
    txt = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
    logits_per_image = model.logit_scale.exp() * img @ txt.T
    return 1 - logits_per_image / 100


def test_paper_settings_give_styleclips_clip_loss(ffhq_home):
    """settings="paper" on the ffhq world's code path: the first step's loss (the latent and
    identity terms are 0 there) equals StyleCLIP's CLIPLoss of the same image and text."""
    import math

    world = hairlib.load_world("ffhq", resolution=256)
    world.clip.model.logit_scale.data.fill_(math.log(100.0))  # OpenAI's released value (clamped at 100)
    w = world.sample(2, seed=3)
    r = hairlib.edit(world, w, "curly hair", method="optimize", settings="paper", steps=1, progress=False)
    with torch.no_grad():
        ref = _styleclip_clip_loss(world.clip.model, world.clip.tokenizer(["curly hair"]), world.generate(w),
                                   world.clip.image_size)
    assert r.losses[0] == pytest.approx(ref.mean().item(), abs=1e-5)
    # the world's settings are the paper's on ffhq; the mini world's normalised input is another loss
    assert world.settings.name == "paper"
    r2 = hairlib.edit(world, w, "curly hair", method="optimize", steps=1, progress=False)
    assert r2.losses[0] == pytest.approx(r.losses[0], abs=1e-7)
    from hairlib.methods.settings import MINI

    r3 = hairlib.edit(world, w, "curly hair", method="optimize", settings=MINI, steps=1, augment=0, progress=False)
    assert abs(r3.losses[0] - r.losses[0]) > 1e-4


def test_maniclip_runs_the_authors_checkpoint_format_on_the_256px_world(ffhq_home, tmp_path, monkeypatch):
    """The ffhq code path of ``hairlib.edit(method="maniclip")``: the 256 px generator (14 rows) and
    an editor file as the authors' train.py saves it (``state_dict`` with their CLIP inside,
    ``epoch``, ``optimizer``); stand-ins 32 wide, as the generator here, instead of 512."""
    from hairlib import worlds
    from hairlib.methods.maniclip import load_maniclip_editor
    from hairlib.nets import clip as clip_mod
    from hairlib.nets.maniclip import ManiCLIPConfig, ManiCLIPEditor
    from tests.conftest import TINY_CLIP

    wide = {**TINY_CLIP, "embed_dim": 32}
    tiny = clip_mod.build_model(wide)[0]
    real_load = clip_mod.load_clip
    monkeypatch.setattr(worlds, "load_clip", lambda name, device="cpu", **kw: real_load(
        "tiny", device, config=wide, state_dict=tiny.state_dict()))
    world = hairlib.load_world("ffhq", resolution=256)
    config = ManiCLIPConfig(num_ws=14, style_dim=32, d_model=32, clip_dim=32, ff=128)
    theirs = {**ManiCLIPEditor(config).state_dict(), "clip_model.logit_scale": torch.tensor(4.6)}
    path = tmp_path / "pretrained_edit_model.pth.tar"
    torch.save({"state_dict": theirs, "epoch": 30, "optimizer": {}}, path)
    editor = load_maniclip_editor(path, config=config)
    assert editor.truncation == 0.7  # the authors' generator truncates the edited W+ at 0.7
    w = world.sample(2, seed=0)
    r = hairlib.edit(world, w, "this person has grey hair. he has mustache.", method="maniclip", editor=editor)
    assert r.images.shape == (2, 3, 256, 256) and r.latents.shape == (2, 14, 32)
    assert not torch.allclose(r.latents, w)


def test_notebook_07s_tables_run_on_the_ffhq_world(ffhq_home):
    """The path notebook 07 takes on a Colab GPU: the same evaluations and tables, on stand-ins
    of the authors' checkpoints; no attribute classifier is published, so success stays empty."""
    pytest.importorskip("pandas")
    from hairlib import tables as T
    from hairlib.evaluate import HAIR_TASKS, evaluate
    from hairlib.methods.global_dir import GlobalConfig, GlobalDirections

    world = hairlib.load_world("ffhq", resolution=256)
    blond = [t for t in HAIR_TASKS if t.name == "blond"]
    directions = GlobalDirections.for_world(world, GlobalConfig(n_stats=256, n_images=1, max_resolution=8), cache=False)
    runs = {"optimize": evaluate(world, "optimize", blond, n=1, steps=1),
            "global": evaluate(world, "global", blond, n=1, directions=directions)}
    df = T.styleclip_table(runs, T.training_seconds(world, directions))
    assert list(df.index) == ["latent optimisation", "global directions"]
    assert df["success"].isna().all() and df["identity"].between(-1, 1 + 1e-5).all()
    assert df.loc["global directions", "training or pre-processing (ours)"] != ""
    assert T.hairclip_table(runs).empty  # HairCLIP's rows come from its own evaluation
