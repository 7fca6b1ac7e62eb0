"""ManiCLIP's BiSeNet face parser against the authors' module (hwang1996/ManiCLIP external/parsing)
and their parse_mask (utils/utils.py) on deterministic weights: key layout, numerical parity,
79999_iter.pth's format, and the masks. The references come from tests/data/make_bisenet_fixture.py."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torch.utils.model_zoo
from safetensors.torch import load_file
from torch import nn

from hairlib.nets.bisenet import (BISENET_CLASSES, FACE_CLASSES, HAIR, INPUT_SIZE, BiSeNet, BiSeNetParser,
                                  load_bisenet, maniclip_resize)

DATA = Path(__file__).resolve().parent / "data"


def _fixture_helpers():
    spec = importlib.util.spec_from_file_location("make_bisenet_fixture", DATA / "make_bisenet_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines helpers only; main() needs the authors' code
    return module


FX = _fixture_helpers()
REF = load_file(str(DATA / "bisenet_ref.safetensors"))
KEYS = json.loads((DATA / "bisenet_keys.json").read_text())
TOL = 2e-5  # fp32 through the whole net, logits up to 8: 0.5-1.1e-5 from CPU to CPU (AVX2 vs AVX-512 kernels)
TIE = 1e-4  # labels are compared where the top two logits are further apart than this


def _max_err(a, b):
    return float((a - b).abs().max())


@pytest.fixture(scope="module")
def deterministic_sd():
    sd = FX.deterministic_state_dict(KEYS["keys"])
    # the references were made from these very numbers (else PyTorch's random streams changed)
    assert torch.allclose(FX.weight_probe(sd), REF["weight_probe"], rtol=1e-9, atol=1e-6)
    return sd


@pytest.fixture(scope="module")
def net(deterministic_sd):
    return load_bisenet(deterministic_sd)


def test_key_layout_matches_theirs(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("BiSeNet must not download anything")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.utils.model_zoo, "load_url", no_download)
    assert KEYS["source"]["repo"] == "hwang1996/ManiCLIP" and KEYS["count"] == len(KEYS["keys"]) == 191
    sd = BiSeNet().state_dict()
    assert [[k, list(v.shape)] for k, v in sd.items()] == [[k, s] for k, s in KEYS["keys"].items()]
    assert sd["cp.resnet.layer4.0.downsample.1.num_batches_tracked"].dtype == torch.int64
    assert sd["conv_out.conv_out.weight"].shape == (19, 256, 1, 1)


def test_classes_are_face_parsing_pytorchs():
    assert len(BISENET_CLASSES) == 19 and BISENET_CLASSES[0] == "background"
    assert HAIR == 17 and BISENET_CLASSES[14] == "neck" and BISENET_CLASSES[16] == "cloth"  # ManiCLIP's comment
    assert [BISENET_CLASSES[i] for i in FACE_CLASSES] == [
        "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r", "nose", "mouth", "u_lip",
        "l_lip"]
    assert INPUT_SIZE == 512


def test_parity_with_authors(net):
    images = FX.deterministic_images(FX.NET_INPUT, FX.SEEDS["net"])
    with torch.no_grad():
        out, out16, out32 = net(images)
    assert out.shape == out16.shape == out32.shape == (2, 19, 64, 64)
    errs = {"out": _max_err(out[FX.OUT_SAMPLE], REF["out"]), "out16": _max_err(out16[FX.AUX_SAMPLE], REF["out16"]),
            "out32": _max_err(out32[FX.AUX_SAMPLE], REF["out32"])}
    assert max(errs.values()) <= TOL, f"max abs errors {errs}"
    top2 = out.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > TIE
    assert clear.float().mean() > 0.99
    assert torch.equal(out.argmax(1)[clear], REF["labels"].long()[clear])
    with torch.no_grad():
        assert torch.equal(net.logits(images), out)  # the main head alone


def test_checkpoint_round_trip(tmp_path, deterministic_sd, net):
    """79999_iter.pth is a plain state dict; ManiCLIP loads it with a strict load_state_dict."""
    path = tmp_path / "79999_iter.pth"
    torch.save(deterministic_sd, path)
    loaded = load_bisenet(path, device="cpu")
    assert isinstance(loaded, BiSeNet) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, deterministic_sd[k]), k
    old = {k: v for k, v in deterministic_sd.items() if not k.endswith("num_batches_tracked")}
    x = FX.deterministic_images((1, 3, 32, 32), 7)
    with torch.no_grad():
        assert torch.equal(load_bisenet(old).logits(x), net.logits(x))


def test_bad_checkpoints_raise_naming_keys(tmp_path, deterministic_sd):
    wrong = dict(deterministic_sd, **{"conv_out.conv_out.weight": torch.zeros(18, 256, 1, 1)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"wrong\.pth.*shape mismatches: conv_out\.conv_out\.weight: "
                                         r"checkpoint \(18, 256, 1, 1\)"):
        load_bisenet(tmp_path / "wrong.pth")
    missing = {k: v for k, v in deterministic_sd.items() if k != "cp.arm16.bn_atten.running_var"}
    with pytest.raises(ValueError, match=r"missing keys: cp\.arm16\.bn_atten\.running_var"):
        load_bisenet(missing)
    renamed = {("cp.sp.conv1.weight" if k == "cp.resnet.conv1.weight" else k): v for k, v in deterministic_sd.items()}
    with pytest.raises(ValueError, match=r"missing keys: cp\.resnet\.conv1\.weight.*unexpected keys: cp\.sp\.conv1"):
        load_bisenet(renamed)
    prefixed = {"module." + k: v for k, v in deterministic_sd.items()}  # as ManiCLIP's strict load, refused
    with pytest.raises(ValueError, match=r"191 missing keys: cp\.resnet\.conv1\.weight.*191 unexpected keys: module\."):
        load_bisenet(prefixed)
    with pytest.raises(ValueError, match="expected a state dict of tensors"):
        load_bisenet({"state_dict": deterministic_sd})
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_bisenet(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        BiSeNet()(torch.zeros(1, 1, 32, 32))


def test_resize_is_theirs():
    x = REF["resize_in"]
    for side in (12, 5, 8):
        assert _max_err(maniclip_resize(x, (side, side)), REF[f"resize_{side}"]) <= 1e-6, side
    assert maniclip_resize(x, (8, 8)) is x
    assert torch.equal(maniclip_resize(x, (12, 12)), F.interpolate(x, (12, 12), mode="bilinear", align_corners=False))
    assert torch.equal(maniclip_resize(x, (5, 5)), F.adaptive_avg_pool2d(x, 5))
    assert maniclip_resize(x, (8, 10)).shape == (1, 2, 8, 10)  # theirs would leave it 8 x 8


def _check_against_parse_mask(parser, name, shape):
    """Our parse, the authors' masks (authors_resize=True) and our {0, 1} masks against their parse_mask."""
    images = FX.deterministic_images(shape, FX.SEEDS[name])
    size = shape[-2:]
    logits = parser.logits(images)
    assert logits.shape == (shape[0], 19, 512, 512)
    top2 = logits.topk(2, dim=1).values
    tie = (top2[:, :1] - top2[:, 1:]) <= TIE  # [N, 1, 512, 512]
    assert tie.float().mean() < 1e-3
    parse = logits.argmax(1, keepdim=True)
    clear = ~tie[FX.PARSE_SAMPLE]
    assert torch.equal(parse[FX.PARSE_SAMPLE][clear], REF[f"{name}_parse"].long()[clear])

    theirs = parser.masks_from_parse(parse, size, authors_resize=True)
    settled = maniclip_resize(tie.float(), size) == 0  # output pixels no near-tie label feeds into
    if name == "small":
        ref = {"hair": REF["small_hair"].float() / 64, "face": REF["small_face"].float() / 64}
        keep = settled
    else:
        ref = {"hair": REF["large_hair"], "face": REF["large_face"]}
        keep = settled[FX.LARGE_SAMPLE]
        for k in ref:  # whole-mask sums: a pixel fed by a near tie may differ by at most 1
            bound = 1e-2 + float((~settled).sum())
            assert abs(float(theirs[k].double().sum()) - float(REF[f"large_{k}_sum"])) <= bound, k
    assert keep.float().mean() > 0.99
    for k in ref:
        ours_k = theirs[k] if name == "small" else theirs[k][FX.LARGE_SAMPLE]
        assert ours_k.shape == ref[k].shape
        assert _max_err(ours_k[keep], ref[k][keep]) <= TOL, k
    fractional = ((theirs["hair"] > 0) & (theirs["hair"] < 1)).float().mean()
    assert 0 < fractional < 0.1  # their resize leaves fractions at region edges
    assert torch.equal(theirs["background"], ((theirs["hair"] + theirs["face"]) == 0).float())

    m = parser.masks_from_parse(parse, size)
    assert set(m) == {"hair", "face", "background"}
    for k, v in m.items():
        assert v.shape == (shape[0], 1, *size) and v.dtype == torch.float32, k
        assert set(v.unique().tolist()) == {0.0, 1.0}, k
    assert torch.equal(m["hair"] + m["face"] + m["background"], torch.ones_like(m["hair"]))
    for k in ("hair", "face"):
        exact = (theirs[k] == 0) | (theirs[k] == 1)
        assert torch.equal(m[k][exact], theirs[k][exact]), k
    assert m["background"][theirs["background"] == 1].eq(1).all()


@pytest.mark.parametrize("name, shape", [("small", FX.SMALL_INPUT), ("large", FX.LARGE_INPUT)])
def test_masks_match_their_parse_mask(net, name, shape):
    _check_against_parse_mask(BiSeNetParser(net), name, shape)


def test_parser_runs_the_network_end_to_end(net):
    parser = BiSeNetParser(net, input_size=64)  # no resize at 64 px: quick
    images = FX.deterministic_images((1, 3, 64, 64), 5)
    with torch.no_grad():
        expected = net(images)[0].argmax(1, keepdim=True)
    assert torch.equal(parser.parse(images), expected) and torch.equal(parser.labels(images), expected)
    m = parser(images)
    assert torch.equal(m["hair"], (expected == HAIR).float())
    assert torch.equal(m["face"], ((expected >= 1) & (expected <= 13)).float())
    assert not m["hair"].requires_grad


class LabelStub(nn.Module):
    """Stands in for BiSeNet: a tuple of three logits whose first has argmax ``label_map`` [512, 512]
    for every image (the others have other argmaxes); records what it was given."""

    def __init__(self, label_map):
        super().__init__()
        self.label_map = label_map
        self.seen = None

    def forward(self, x):
        self.seen = x
        onehot = F.one_hot(self.label_map, len(BISENET_CLASSES)).permute(2, 0, 1).float()  # [19, 512, 512]
        main = (5 * onehot).expand(x.shape[0], -1, -1, -1)
        return main, -main, main.roll(1, dims=1)


def known_label_map():
    """At 512 px: left half hair; a skin block with a nose, an eye, eyeglasses and an ear; a neck, cloth
    and a hat outside the face; background elsewhere. Every edge on a multiple of 8 px."""
    lab = torch.zeros(512, 512, dtype=torch.long)
    lab[:, :256] = HAIR
    for (r0, r1, c0, c1), name in [((200, 400, 296, 424), "skin"), ((280, 320, 344, 360), "nose"),
                                   ((240, 256, 320, 336), "l_eye"), ((232, 264, 312, 344), "eye_g"),
                                   ((256, 320, 424, 440), "r_ear"), ((400, 448, 320, 400), "neck"),
                                   ((448, 512, 296, 424), "cloth"), ((104, 200, 296, 424), "hat")]:
        lab[r0:r1, c0:c1] = BISENET_CLASSES.index(name)
    lab[240:248, 320:328] = BISENET_CLASSES.index("l_eye")
    return lab


@pytest.mark.parametrize("size", [1024, 512, 256])
def test_masks_are_the_known_regions(size):
    stub = LabelStub(known_label_map())
    parser = BiSeNetParser(stub)
    images = torch.rand(2, 3, size, size) * 2 - 1
    m = parser.masks(images)
    assert stub.seen.shape == (2, 3, 512, 512)
    assert torch.equal(stub.seen, maniclip_resize(images, (512, 512)))  # [-1, 1] as it is: no normalisation
    s = size / 512
    face = torch.zeros(size, size)
    face[int(200 * s):int(400 * s), int(296 * s):int(440 * s)] = 1  # skin with its parts, glasses and the ear
    face[int(200 * s):int(256 * s), int(424 * s):int(440 * s)] = 0  # beside the ear, above it: background
    face[int(320 * s):int(400 * s), int(424 * s):int(440 * s)] = 0  # and below it
    hair = torch.zeros(size, size)
    hair[:, :size // 2] = 1
    assert torch.equal(m["hair"][0, 0], hair) and torch.equal(m["hair"][1, 0], hair)
    assert torch.equal(m["face"][0, 0], face)
    assert torch.equal(m["background"][0, 0], 1 - hair - face)  # backdrop, neck, cloth, hat
    authors = parser.masks(images, authors_resize=True)
    if size == 512:
        for k in m:
            assert torch.equal(authors[k], m[k]), k
    else:  # edges on 8 px multiples: their area shrink (256) is exact; their bilinear enlargement (1024) is not
        assert torch.equal(authors["hair"], maniclip_resize((stub.label_map == HAIR).float()[None, None], (size, size))
                           .expand(2, -1, -1, -1))
        assert (size == 256) == bool(((authors["face"] == 0) | (authors["face"] == 1)).all())


def test_bad_images_raise():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        BiSeNetParser(LabelStub(known_label_map())).masks(torch.zeros(1, 1, 64, 64))
