"""ManiCLIP's editor against the authors' TransModel (hwang1996/ManiCLIP train.py) on deterministic
weights: key layout, numerical parity, loading their checkpoint format, and config sizing.
The references come from tests/data/make_maniclip_fixture.py."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hairlib.nets.maniclip import ManiCLIPConfig, ManiCLIPEditor, load_maniclip, maniclip_state

DATA = Path(__file__).resolve().parent / "data"


def _fixture_helpers():
    spec = importlib.util.spec_from_file_location("make_maniclip_fixture", DATA / "make_maniclip_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines helpers only; main() needs the authors' code
    return module


FX = _fixture_helpers()
REF = load_file(str(DATA / "maniclip_ref.safetensors"))
KEYS = json.loads((DATA / "maniclip_keys.json").read_text())
DEFAULT = ManiCLIPConfig(heads=4, layers=4)  # their TransModel()'s own defaults
TOL = 1e-5


def _deterministic(config, probe_key):
    model = ManiCLIPEditor(config)
    sd = FX.deterministic_state_dict(model.state_dict())
    # the references were made from these very numbers (else PyTorch's random streams changed)
    assert torch.allclose(FX.weight_probe(sd), REF[probe_key], rtol=1e-9, atol=1e-6)
    return model, sd


def _run(model):
    with torch.no_grad():
        return model.eval()(REF["w"], REF["text"])


def _max_err(a, b):
    return float((a - b).abs().max())


def test_key_layout_matches_theirs():
    assert KEYS["source"]["repo"] == "hwang1996/ManiCLIP" and KEYS["count"] == len(KEYS["keys"])
    with torch.device("meta"):
        ours = ManiCLIPEditor()
        four = ManiCLIPEditor(DEFAULT)
    assert [[k, list(v.shape)] for k, v in ours.state_dict().items()] == KEYS["keys"]
    assert [k for k in four.state_dict()] == [k for k, _ in KEYS["keys"]
                                              if not any(f"decoder.layers.{i}." in k for i in (4, 5))]


def test_positional_encoding_matches_theirs():
    # sin / cos of the same arguments: equal to the last bit or two, by the CPU's vector math
    assert torch.allclose(ManiCLIPEditor().pos_encoder.pe, REF["pe"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("config, name", [(ManiCLIPConfig(), "released"), (DEFAULT, "default")])
def test_parity_with_authors(config, name):
    model, sd = _deterministic(config, f"{name}_weight_probe")
    model.load_state_dict(sd, strict=True)
    out = _run(model)
    assert out.shape == (2, 14, 512)
    err = _max_err(out, REF[f"out_{name}"])
    assert err <= TOL, f"{name}: max abs error {err:.3g}"


def _fake_clip():
    return {"clip_model.positional_embedding": torch.zeros(77, 512), "clip_model.text_projection": torch.zeros(512, 512),
            "clip_model.logit_scale": torch.tensor(4.6052), "clip_model.visual.conv1.weight": torch.zeros(768, 3, 32, 32),
            "clip_model.transformer.resblocks.0.ln_1.weight": torch.ones(512)}


def _their_file_format(sd, prefix=""):
    return {"epoch": 31, "state_dict": {prefix + k: v for k, v in {**sd, **_fake_clip()}.items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.5, 0.999), "params": [0, 1]}]}}


def test_their_checkpoint_loads_strictly_and_matches(tmp_path):
    _, sd = _deterministic(ManiCLIPConfig(), "released_weight_probe")
    path = tmp_path / "pretrained_edit_model.pth.tar"
    torch.save(_their_file_format(sd), path)
    model = load_maniclip(path)
    assert not model.training
    assert _max_err(_run(model), REF["out_released"]) <= TOL
    # the same, in memory and with DataParallel prefixes
    model = load_maniclip(_their_file_format(sd, prefix="module."))
    assert _max_err(_run(model), REF["out_released"]) <= TOL
    _, sd4 = _deterministic(DEFAULT, "default_weight_probe")
    assert _max_err(_run(load_maniclip({"state_dict": sd4}, config=DEFAULT)), REF["out_default"]) <= TOL


def test_wrong_checkpoint_names_keys(tmp_path):
    with torch.device("meta"):
        sd = dict(ManiCLIPEditor().state_dict())
    sd = {k: torch.zeros(v.shape) for k, v in sd.items()}
    bad = dict(sd)
    del bad["decoder.layers.5.linear2.weight"]
    bad["decoder.layers.6.linear1.weight"] = torch.zeros(2048, 512)
    bad["x_map.0.weight"] = torch.zeros(512, 256)
    with pytest.raises(ValueError) as e:
        load_maniclip({"state_dict": bad})
    msg = str(e.value)
    assert "decoder.layers.5.linear2.weight" in msg and "decoder.layers.6.linear1.weight" in msg
    assert "x_map.0.weight" in msg and "config" in msg
    # a 4-layer model read with the released config names the missing layers
    four = {k: v for k, v in sd.items() if not k.startswith(("decoder.layers.4.", "decoder.layers.5."))}
    with pytest.raises(ValueError, match=r"missing keys: decoder\.layers\.4\."):
        load_maniclip(four)
    assert set(maniclip_state({"state_dict": four})) == set(four)
    # not a checkpoint at all
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth.tar"):
        load_maniclip(junk)


def test_mini_config_runs_and_round_trips():
    config = ManiCLIPConfig(num_ws=10, style_dim=128, d_model=128, clip_dim=128, heads=4, layers=2, ff=256)
    assert ManiCLIPConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    torch.manual_seed(0)
    model = ManiCLIPEditor(config).eval()
    w, text = torch.randn(3, 128), torch.randn(3, 128)
    with torch.no_grad():
        out = model(w, text)
        assert out.shape == (3, 10, 128)
        assert torch.allclose(model(w, text[:1]), model(w, text[:1].expand(3, -1)))  # one text for all
        edited = model.edit(w, text, strength=0.5)
    assert edited.shape == (3, 10, 128)
    assert torch.allclose(edited, w[:, None] + 0.5 * out, atol=1e-6)
    assert all(v.shape[-1] in (128, 256, 384) for v in model.state_dict().values())
    with pytest.raises(ValueError, match="style_dim == d_model == clip_dim"):
        ManiCLIPConfig(num_ws=10, style_dim=128, d_model=64, clip_dim=128)
    with pytest.raises(ValueError, match="num_ws"):
        ManiCLIPConfig(num_ws=21)
    with pytest.raises(ValueError, match="unknown"):
        ManiCLIPConfig.from_dict({"num_ws": 10, "width": 3})
    with pytest.raises(ValueError, match=r"w must be \[N, 128\]"):
        model(torch.randn(3, 10, 128), text)
