"""HairCLIP's face parser: upstream layout and outputs, parsenet.pth round trip, mask logic."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from hairlib.nets.parser import (FACE_CLASSES, HAIR, INPUT_SIZE, PARSER_CLASSES, FaceParser, ParseNet,
                                 load_parser)

DATA = Path(__file__).parent / "data"
UPSTREAM_KEYS = json.loads((DATA / "parser_keys.json").read_text())  # from HairCLIP's unet(); see make_parser_fixture.py
REF_INPUT = (1, 3, 32, 48)  # the parity input: non-square, the smallest size that exercises all four levels twice over
REF_SAMPLE = (slice(None), slice(None), slice(1, None, 4), slice(2, None, 4))  # logits kept in the fixture: every 4th pixel


def synthetic_state_dict(shapes):
    """Deterministic weights for ``{key: shape}``, independent of module init: key i in sorted order
    draws from ``torch.Generator().manual_seed(i)``. Convolutions: randn * sqrt(2 * shape[0] / numel)
    (He scale for Conv2d); BN weight 1 + 0.2 randn, biases 0.1 randn, running_mean 0.2 randn,
    running_var 0.5 + rand, num_batches_tracked 1000. Logits come out of order 1 to 10."""
    out = {}
    for i, (k, shape) in enumerate(sorted(shapes.items())):
        g, shape = torch.Generator().manual_seed(i), tuple(shape)
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(shape, generator=g)
        elif k.endswith("running_mean"):
            out[k] = 0.2 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            out[k] = 1 + 0.2 * torch.randn(shape, generator=g) if k.endswith("weight") else 0.1 * torch.randn(shape, generator=g)
        else:
            out[k] = torch.randn(shape, generator=g) * math.sqrt(2 * shape[0] / math.prod(shape))
    return out


def synthetic_input(shape=REF_INPUT):
    """Images in [-1, 1], uniform noise from ``torch.Generator().manual_seed(12345)``."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(12345)) * 2 - 1


@pytest.fixture(scope="module")
def synthetic_sd():
    return synthetic_state_dict(UPSTREAM_KEYS)


def test_state_dict_layout_is_hairclips():
    sd = ParseNet().state_dict()
    assert [[k, list(v.shape)] for k, v in sd.items()] == [[k, s] for k, s in UPSTREAM_KEYS.items()]
    assert len(sd) == 136 and sd["final.weight"].shape == (19, 16, 1, 1)
    assert sd["center.conv2.1.num_batches_tracked"].dtype == torch.int64


def test_classes_are_celebamask_hqs():
    assert len(PARSER_CLASSES) == 19 and PARSER_CLASSES[0] == "background"
    assert HAIR == 13 and PARSER_CLASSES[HAIR] == "hair"  # HairCLIP's `== 13` / `!= 13`
    assert [PARSER_CLASSES[i] for i in FACE_CLASSES] == [
        "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip"]
    assert INPUT_SIZE == 512


def test_matches_hairclip_unet_outputs(synthetic_sd):
    ref = load_file(str(DATA / "parser_ref.safetensors"))
    x = synthetic_input()
    assert torch.equal(x[0, :, 0, :4], ref["input_sample"])  # the generator still gives the same input
    checksum = sum(v.double().abs().sum() for k, v in synthetic_sd.items() if v.is_floating_point())
    assert abs(checksum - ref["weights_abs_sum"].item()) < 1e-6 * checksum
    net = load_parser(synthetic_sd)
    logits = net(x)
    assert logits.shape == (1, 19, 32, 48)
    assert (logits[REF_SAMPLE] - ref["logits_sampled"]).abs().max() < 1e-4
    top2 = logits.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-3  # argmax compared wherever it is not a near tie
    assert clear.float().mean() > 0.95
    assert torch.equal(logits.argmax(1)[clear], ref["labels"].long()[clear])


def test_parsenet_file_round_trip(tmp_path, synthetic_sd):
    """A checkpoint in parsenet.pth's format (a bare state dict, PyTorch's legacy serialisation)."""
    path = tmp_path / "parsenet.pth"
    torch.save(synthetic_sd, path, _use_new_zipfile_serialization=False)
    net = load_parser(path, device="cpu")
    assert isinstance(net, ParseNet) and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, synthetic_sd[k]), k
    # checkpoints from PyTorch < 0.4.1 have no num_batches_tracked; they load all the same
    old = {k: v for k, v in synthetic_sd.items() if not k.endswith("num_batches_tracked")}
    x = synthetic_input()
    assert torch.equal(load_parser(old)(x), net(x))


def test_bad_checkpoints_raise_naming_keys(tmp_path, synthetic_sd):
    wrong = dict(synthetic_sd, **{"final.weight": torch.zeros(8, 16, 1, 1)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"shape mismatches: final\.weight: checkpoint \(8, 16, 1, 1\)"):
        load_parser(tmp_path / "wrong.pth")
    missing = {k: v for k, v in synthetic_sd.items() if k != "up_concat2.up.weight"}
    with pytest.raises(ValueError, match=r"missing keys: up_concat2\.up\.weight"):
        load_parser(missing)
    with pytest.raises(ValueError, match="expected a state dict of tensors.*'state_dict'"):
        load_parser({"state_dict": synthetic_sd})  # parsenet.pth is bare; a wrapped file is some other model
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_parser(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="divisible by 16"):
        ParseNet()(torch.zeros(1, 3, 40, 40))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        FaceParser(ParseNet()).masks(torch.zeros(1, 1, 64, 64))


class LabelStub(nn.Module):
    """Stands in for the network: logits whose argmax is ``label_map`` [512, 512] for every image;
    records what it was given."""

    def __init__(self, label_map):
        super().__init__()
        self.label_map = label_map
        self.seen = None

    def forward(self, x):
        self.seen = x
        onehot = F.one_hot(self.label_map, len(PARSER_CLASSES)).permute(2, 0, 1).float()  # [19, 512, 512]
        return (5 * onehot).expand(x.shape[0], -1, -1, -1)


def known_label_map():
    """At 512 px: left half hair; a skin block with a nose and a left eye inside; an ear and a neck
    outside the face; background elsewhere. Every edge on a multiple of 4 px."""
    lab = torch.zeros(512, 512, dtype=torch.long)
    lab[:, :256] = HAIR
    lab[200:400, 300:420] = PARSER_CLASSES.index("skin")
    lab[280:320, 340:360] = PARSER_CLASSES.index("nose")
    lab[240:252, 320:340] = PARSER_CLASSES.index("l_eye")
    lab[260:320, 420:440] = PARSER_CLASSES.index("r_ear")
    lab[400:512, 320:400] = PARSER_CLASSES.index("neck")
    return lab


@pytest.mark.parametrize("size", [1024, 256])
def test_masks_are_the_known_regions(size):
    stub = LabelStub(known_label_map())
    parser = FaceParser(stub)
    images = torch.rand(2, 3, size, size) * 2 - 1
    labels = parser.labels(images)
    assert stub.seen.shape == (2, 3, 512, 512)
    assert labels.dtype == torch.int64 and labels.shape == (2, 1, size, size)

    s = size // 128  # the 512 px map's edges, in this size's pixels: a 4 px multiple times size / 512
    expected = torch.zeros(size, size, dtype=torch.long)
    for (r0, r1, c0, c1), label in [((0, 128, 0, 64), HAIR), ((50, 100, 75, 105), 1), ((70, 80, 85, 90), 2),
                                    ((60, 63, 80, 85), 4), ((65, 80, 105, 110), 9), ((100, 128, 80, 100), 17)]:
        expected[r0 * s:r1 * s, c0 * s:c1 * s] = label
    assert torch.equal(labels[0, 0], expected) and torch.equal(labels[1, 0], expected)

    m = parser.masks(images)
    assert set(m) == {"hair", "face", "background"}
    for name, v in m.items():
        assert v.shape == (2, 1, size, size) and v.dtype == torch.float32, name
        assert set(v.unique().tolist()) == {0.0, 1.0}, name
    half = size // 2
    assert m["hair"][..., :half].eq(1).all() and m["hair"][..., half:].eq(0).all()
    face = torch.zeros(size, size)
    face[50 * s:100 * s, 75 * s:105 * s] = 1  # skin with its nose and eye; not the ear, not the neck
    assert torch.equal(m["face"][0, 0], face)
    assert torch.equal(m["background"], 1 - m["hair"])  # HairCLIP's background: not hair, face included
    assert (m["hair"] * m["face"]).sum() == 0
    if size == 1024:  # HairCLIP's own enlargement, AdaptiveAvgPool2d((1024, 1024)) of the 512 px masks
        hair512 = (known_label_map() == HAIR).float()[None, None]
        assert torch.equal(m["hair"][:1], F.adaptive_avg_pool2d(hair512, 1024))
        assert torch.equal(m["background"][:1], F.adaptive_avg_pool2d(1 - hair512, 1024))


class BrightIsHair(nn.Module):
    """Labels hair wherever the mean of the three channels it is given is above 0, skin elsewhere."""

    def forward(self, x):
        self.seen = x
        hair = (x.mean(1) > 0).long() * (HAIR - 1) + 1
        return F.one_hot(hair, len(PARSER_CLASSES)).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("size, bright_cols", [(1024, 300), (256, 76)])
def test_preprocessing_is_hairclips(size, bright_cols):
    """Images go in unnormalised, average-pooled to 512 px, and masks come back aligned."""
    images = -torch.ones(1, 3, size, size)
    images[..., :bright_cols] = 1
    stub = BrightIsHair()
    m = FaceParser(stub).masks(images)
    assert torch.equal(stub.seen, F.adaptive_avg_pool2d(images, 512))  # [-1, 1] as it is: no normalisation
    assert m["hair"][..., :bright_cols].eq(1).all() and m["hair"][..., bright_cols:].eq(0).all()


def test_face_parser_runs_the_real_network_at_256(synthetic_sd):
    parser = FaceParser(load_parser(synthetic_sd))
    images = synthetic_input((1, 3, 256, 256))
    labels = parser.labels(images)
    full = parser.net(F.adaptive_avg_pool2d(images, 512)).argmax(1, keepdim=True)  # [1, 1, 512, 512]
    assert torch.equal(labels, full[..., ::2, ::2])
    m = parser(images)
    assert torch.equal(m["hair"], (labels == HAIR).float()) and torch.equal(m["background"] + m["hair"], torch.ones_like(m["hair"]))
    assert not m["hair"].requires_grad
