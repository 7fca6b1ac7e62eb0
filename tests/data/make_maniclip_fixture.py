"""Regenerate the ManiCLIP editor fixtures in this folder (not run by the tests; the tests import
only the ``deterministic_*`` helpers and ``weight_probe`` below).

Needs a work tree of hwang1996/ManiCLIP (commit a727c1e0), e.g.

    git --git-dir=<mirror> --work-tree=/tmp/maniclip_src checkout -f HEAD
    python tests/data/make_maniclip_fixture.py /tmp/maniclip_src

Their ``TransModel`` lives in ``train.py``, whose imports need CUDA, OpenAI's ``clip`` package,
tensorboard and their StyleGAN2 ops. So this script does not import ``train.py``: it parses it
and executes only the ``PositionalEncoding`` and ``TransModel`` class definitions, in a
namespace holding the names those classes use (torch, nn, Tensor, math, LayerNorm,
TransformerDecoder, TransformerDecoderLayer, torchvision's transforms) and a stub ``clip``
whose ``load`` returns a parameter-free module with ``encode_text(x) = x``. Their forward
``model(w, text_tokens)`` then takes the CLIP text embedding in place of the tokens, and their
state dict is theirs less the ``clip_model.*`` keys of the real CLIP. Nothing of theirs is
committed here.

Writes:
  maniclip_keys.json        every key and shape, in order, of ``TransModel(nhead=8,
                            num_decoder_layers=6)`` (as train.py / generate.py build it) without
                            CLIP: the layout of ``pretrained_edit_model.pth.tar['state_dict']``
                            less ``clip_model.*``
  maniclip_ref.safetensors  ``w`` [2, 512], ``text`` [2, 512] (deterministic_inputs), their
                            ``pe`` buffer, and their eval-mode outputs on deterministic weights:
                            ``out_released`` (nhead 8, 6 layers) and ``out_default``
                            (``TransModel()``: nhead 4, 4 layers), each [2, 14, 512];
                            ``*_weight_probe``: the float64 sum of every weight, in sorted key
                            order (tells a change of PyTorch's random streams from a change of
                            the model).

Deterministic weights do not depend on module initialisation: the tensor for the i-th key in
sorted order is drawn from ``torch.Generator().manual_seed(i)``; the positional-encoding buffer
keeps the value the module computes (the tests check ours against theirs).
"""
import ast
import json
import math
import sys
import types
from pathlib import Path
from typing import Dict, Sequence

import torch

HERE = Path(__file__).resolve().parent
MANICLIP_COMMIT = "a727c1e09035fcf3a208c13514505e053c39ad85"  # a work tree has no .git to ask
PE_KEY = "pos_encoder.pe"
SEEDS = {"w": 21, "text": 22}


def deterministic_tensor(key: str, shape: Sequence[int], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """The fixture value of one state-dict entry from its name, shape and seed: 1-D ``weight``
    (LayerNorm scales) U(0.5, 1.5), 1-D ``bias`` N(0, 0.1^2), other weights N(0, 1 / fan_in)."""
    g = torch.Generator().manual_seed(seed)
    shape = tuple(shape)
    if len(shape) == 1:
        if key.endswith("weight"):
            return (0.5 + torch.rand(shape, generator=g)).to(dtype)
        return (0.1 * torch.randn(shape, generator=g)).to(dtype)
    return (torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))).to(dtype)


def deterministic_state_dict(layout: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Fixture values for every key of ``layout`` (a state dict); ``pos_encoder.pe`` is kept as is."""
    return {k: (v.clone() if k == PE_KEY else deterministic_tensor(k, v.shape, v.dtype, i))
            for i, (k, v) in enumerate(sorted(layout.items()))}


def deterministic_inputs(n: int = 2, dim: int = 512):
    """(w [n, dim] ~ N(0, 1), text embedding [n, dim] ~ N(0, 0.5^2))."""
    w = torch.randn(n, dim, generator=torch.Generator().manual_seed(SEEDS["w"]))
    text = 0.5 * torch.randn(n, dim, generator=torch.Generator().manual_seed(SEEDS["text"]))
    return w, text


def weight_probe(state_dict: Dict[str, torch.Tensor]) -> torch.Tensor:
    """[len(state_dict)] float64: the sum of every tensor, in sorted key order."""
    return torch.tensor([float(state_dict[k].double().sum()) for k in sorted(state_dict)], dtype=torch.float64)


class _StubCLIP(torch.nn.Module):
    """Stands in for ``clip.load(...)[0]``: no weights, ``encode_text`` returns its input."""

    def encode_text(self, x):
        return x


def their_classes(src_dir: str) -> types.SimpleNamespace:
    """``PositionalEncoding`` and ``TransModel`` from ``train.py``, executed without its imports."""
    import torchvision.transforms as transforms
    from torch import Tensor, nn
    from torch.nn import LayerNorm, TransformerDecoder, TransformerDecoderLayer

    path = Path(src_dir) / "train.py"
    tree = ast.parse(path.read_text())
    wanted = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in ("PositionalEncoding", "TransModel")]
    assert [n.name for n in wanted] == ["PositionalEncoding", "TransModel"], [n.name for n in wanted]
    clip = types.SimpleNamespace(load=lambda name, device=None: (_StubCLIP(), None))
    ns = {"torch": torch, "nn": nn, "Tensor": Tensor, "math": math, "LayerNorm": LayerNorm,
          "TransformerDecoder": TransformerDecoder, "TransformerDecoderLayer": TransformerDecoderLayer,
          "transforms": transforms, "clip": clip, "__name__": "maniclip_train_classes"}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(path), "exec"), ns)
    return types.SimpleNamespace(PositionalEncoding=ns["PositionalEncoding"], TransModel=ns["TransModel"])


def _write_keys(path: Path, source: dict, note: str, module: torch.nn.Module) -> None:
    keys = [[k, list(v.shape)] for k, v in module.state_dict().items()]
    head = json.dumps({"source": source, "note": note, "count": len(keys)}, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(k) for k in keys)
    path.write_text(head + ',\n "keys": [\n' + body + "\n ]\n}\n")


def main(src_dir: str) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    theirs = their_classes(src_dir)
    released = theirs.TransModel(nhead=8, num_decoder_layers=6).eval()
    default = theirs.TransModel().eval()
    _write_keys(HERE / "maniclip_keys.json",
                {"repo": "hwang1996/ManiCLIP", "commit": MANICLIP_COMMIT, "files": ["train.py", "generate.py"],
                 "construction": "TransModel(nhead=8, num_decoder_layers=6) (train.py, generate.py); "
                                 "ckpt['state_dict'] of pretrained_edit_model.pth.tar"},
                "Keys and shapes in order, as a current PyTorch names them, without the frozen OpenAI CLIP "
                "ViT-B/32 the checkpoint also holds under 'clip_model.' (stubbed here). No DataParallel prefix "
                "(train.py does not wrap the model). pos_encoder.pe is a persistent buffer.", released)

    w, text = deterministic_inputs()
    out, probes = {}, {}
    for name, model in (("released", released), ("default", default)):
        sd = deterministic_state_dict(model.state_dict())
        model.load_state_dict(sd)
        probes[name] = weight_probe(sd)
        with torch.no_grad():
            out[name] = model(w, text)
    save_file({"w": w, "text": text, "pe": released.pos_encoder.pe.contiguous(),
               "out_released": out["released"].contiguous(), "out_default": out["default"].contiguous(),
               "released_weight_probe": probes["released"], "default_weight_probe": probes["default"]},
              str(HERE / "maniclip_ref.safetensors"), metadata={"maniclip_commit": MANICLIP_COMMIT})


if __name__ == "__main__":
    main(sys.argv[1])
