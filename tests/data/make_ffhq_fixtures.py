"""Regenerate the ffhq-world fixtures in this folder: ArcFace IR-SE50 and the e4e encoder
(not run by the tests; the tests import only the two ``deterministic_*`` helpers below).

Needs a checkout of omertov/encoder4editing (commit 99ea505) whose ``models/stylegan2/op``
package can be imported on CPU: its ``op/*.py`` compile CUDA at import, so point E4E at a
copy whose ``op/__init__.py`` is replaced by a stub (the encoder uses only ``EqualLinear``
without activation, i.e. ``F.linear``; nothing from ``op`` runs). Nothing of theirs is
committed here. Its ``helpers.py`` / ``model_irse.py`` are TreB1eN/InsightFace_Pytorch's
IR-SE code (commit 350ff7a), whose ``Backbone(50, 0.6, 'ir_se')`` has the same layout.

    python tests/data/make_ffhq_fixtures.py /path/to/encoder4editing-cpu-copy

Writes:
  arcface_keys.json      every key and shape, in order, of
                         ``Backbone(input_size=112, num_layers=50, mode='ir_se', drop_ratio=0.6,
                         affine=True)``: the layout of ``model_ir_se50.pth`` (a plain state dict)
  e4e_encoder_keys.json  every key and shape, in order, of ``Encoder4Editing(50, 'ir_se', opts)``
                         with ``opts.stylegan_size = 1024`` (18 styles): the ``encoder.*`` part of
                         ``e4e_ffhq_encode.pt['state_dict']`` with the prefix removed
  ffhq_ref.safetensors   upstream outputs on deterministic weights and inputs (below):
                         ``arcface_emb``      Backbone(x) for x = deterministic_images(2, 112, 11)
                         ``arcface_emb_1024`` StyleCLIP's ``IDLoss.extract_feats`` (pool 1024 -> 256,
                                              crop [35:223, 32:220], pool -> 112, Backbone) of
                                              deterministic_images(1, 1024, 12)
                         ``e4e_codes``        Encoder4Editing(x) (18 styles, before latent_avg) for
                                              x = deterministic_images(1, 256, 13)
                         ``*_weight_probe``   the float64 sum of every weight, in sorted key order, and
                         ``*_input_probe``    the first 16 input values: if parity ever fails, these
                                              tell a change of PyTorch's random streams from a change
                                              of the model.

Deterministic weights do not depend on module initialisation: the tensor for the i-th key in
sorted order is drawn from ``torch.Generator().manual_seed(i)`` (see ``deterministic_tensor``),
so the tests rebuild the same numbers for our modules from the key list alone.
"""
import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, Sequence

import torch

HERE = Path(__file__).resolve().parent
E4E_COMMIT = "99ea50578695d2e8a1cf7259d8ee89b23eea942b"
CONV_GAIN = 0.7  # weights of >= 2 dims: N(0, (CONV_GAIN ** 2) / fan_in); keeps activations O(1) over 24 units
SEEDS = {"arcface_112": 11, "arcface_1024": 12, "e4e_256": 13}


def deterministic_tensor(key: str, shape: Sequence[int], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """The fixture value of one state-dict entry, from its name, shape and seed alone.

    BatchNorm ``running_mean`` N(0, 0.1^2), ``running_var`` U(0.5, 1.5), ``num_batches_tracked``
    0; other 1-D ``weight`` (BatchNorm scale, PReLU slope) U(0.5, 1.5) and 1-D ``bias``
    N(0, 0.1^2); e4e's EqualLinear weights (``styles.N.linear.weight``) N(0, 1) as rosinality
    initialises them (the layer scales by 1/sqrt(in) itself); every other weight
    N(0, CONV_GAIN^2 / fan_in)."""
    g = torch.Generator().manual_seed(seed)
    shape = tuple(shape)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=dtype)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        if key.endswith("weight"):
            return 0.5 + torch.rand(shape, generator=g)
        return 0.1 * torch.randn(shape, generator=g)
    x = torch.randn(shape, generator=g)
    if key.startswith("styles.") and key.endswith(".linear.weight"):
        return x
    return x * (CONV_GAIN / math.sqrt(math.prod(shape[1:])))


def deterministic_state_dict(layout: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Fixture values for every key of ``layout`` (a state dict; only names, shapes, dtypes used)."""
    return {k: deterministic_tensor(k, v.shape, v.dtype, i) for i, (k, v) in enumerate(sorted(layout.items()))}


def deterministic_images(n: int, size: int, seed: int) -> torch.Tensor:
    """[n, 3, size, size], uniform in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def weight_probe(state_dict: Dict[str, torch.Tensor]) -> torch.Tensor:
    """[len(state_dict)] float64: the sum of every tensor, in sorted key order."""
    return torch.tensor([float(state_dict[k].double().sum()) for k in sorted(state_dict)], dtype=torch.float64)


def _write_keys(path: Path, source: dict, note: str, module: torch.nn.Module) -> None:
    keys = [[k, list(v.shape)] for k, v in module.state_dict().items()]
    head = json.dumps({"source": source, "note": note, "count": len(keys)}, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(k) for k in keys)
    path.write_text(head + ',\n "keys": [\n' + body + "\n ]\n}\n")


def main(e4e_dir: str) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    sys.path.insert(0, e4e_dir)
    from models.encoders.model_irse import Backbone  # noqa: E402
    from models.encoders.psp_encoders import Encoder4Editing  # noqa: E402

    arcface = Backbone(input_size=112, num_layers=50, drop_ratio=0.6, mode="ir_se").eval()
    e4e = Encoder4Editing(50, "ir_se", argparse.Namespace(stylegan_size=1024)).eval()
    _write_keys(HERE / "arcface_keys.json",
                {"repo": "omertov/encoder4editing",
                 "files": ["models/encoders/model_irse.py", "models/encoders/helpers.py", "criteria/id_loss.py"],
                 "construction": "Backbone(input_size=112, num_layers=50, drop_ratio=0.6, mode='ir_se') "
                                 "(affine=True default); file model_ir_se50.pth"},
                "State-dict keys and shapes in order, as a current PyTorch names them. Modules: input_layer, "
                "output_layer (declared before body), body. BatchNorm num_batches_tracked keys may be absent in "
                "checkpoints written by PyTorch < 0.4.1; loaders fill them.", arcface)
    _write_keys(HERE / "e4e_encoder_keys.json",
                {"repo": "omertov/encoder4editing",
                 "files": ["models/encoders/psp_encoders.py", "models/encoders/helpers.py", "models/psp.py"],
                 "construction": "Encoder4Editing(50, 'ir_se', opts) with opts.stylegan_size=1024 (18 styles); "
                                 "keys stored with prefix 'encoder.' under ckpt['state_dict']"},
                "Encoder part only (prefix 'encoder.' removed), in order. GradualStyleBlock convs hold Conv2d at "
                "even indices (LeakyReLU between); linear is rosinality EqualLinear (weight [out,in], bias).", e4e)

    sd_a = deterministic_state_dict(arcface.state_dict())
    sd_e = deterministic_state_dict(e4e.state_dict())
    arcface.load_state_dict(sd_a)
    e4e.load_state_dict(sd_e)
    x112 = deterministic_images(2, 112, SEEDS["arcface_112"])
    x1024 = deterministic_images(1, 1024, SEEDS["arcface_1024"])
    x256 = deterministic_images(1, 256, SEEDS["e4e_256"])
    pool256, pool112 = torch.nn.AdaptiveAvgPool2d((256, 256)), torch.nn.AdaptiveAvgPool2d((112, 112))
    with torch.no_grad():
        emb = arcface(x112)
        emb_1024 = arcface(pool112(pool256(x1024)[:, :, 35:223, 32:220]))  # StyleCLIP IDLoss.extract_feats
        codes = e4e(x256)
    save_file({"arcface_emb": emb.contiguous(), "arcface_emb_1024": emb_1024.contiguous(),
               "e4e_codes": codes.contiguous(),
               "arcface_weight_probe": weight_probe(sd_a), "e4e_weight_probe": weight_probe(sd_e),
               "arcface_input_probe": x112.flatten()[:16].clone(),
               "arcface_1024_input_probe": x1024.flatten()[:16].clone(),
               "e4e_input_probe": x256.flatten()[:16].clone()},
              str(HERE / "ffhq_ref.safetensors"), metadata={"e4e_commit": E4E_COMMIT})


if __name__ == "__main__":
    main(sys.argv[1])
