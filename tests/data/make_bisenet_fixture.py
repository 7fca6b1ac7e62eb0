"""Regenerate the BiSeNet (ManiCLIP's face parser) fixtures in this folder (not run by the tests;
the tests import only the ``deterministic_*`` helpers, ``weight_probe`` and the sizes below).

Needs ManiCLIP's ``external/parsing/{__init__,bisenet,resnet}.py`` and ``utils/utils.py`` from
hwang1996/ManiCLIP (commit a727c1e0) under one folder, e.g.

    mkdir -p /tmp/maniclip_src/external/parsing /tmp/maniclip_src/utils
    for f in external/parsing/__init__.py external/parsing/bisenet.py external/parsing/resnet.py utils/utils.py; do
        git --git-dir=<mirror> show HEAD:$f > /tmp/maniclip_src/$f; done
    python tests/data/make_bisenet_fixture.py /tmp/maniclip_src

Their network is imported as ``train.py`` does (``from external.parsing import BiSeNet``). Their
``Resnet18`` downloads torchvision's ImageNet weights when built; this script replaces
``torch.utils.model_zoo.load_url`` by a function returning an empty dict first, so nothing is
downloaded and every weight is then set from ``deterministic_state_dict``. ``utils/utils.py``
imports scipy and numpy for other functions: only its ``resize`` and ``parse_mask`` definitions
are executed (parsed out of the file), with ``torch`` and ``F`` as their names. Nothing of theirs
is committed here; the weights and images are rebuilt by the tests from the helpers below.

Writes:
  bisenet_keys.json        every key and shape, in order, of their ``BiSeNet(n_classes=19)``: the
                           layout of ``bisenet.pth`` / face-parsing.PyTorch's ``79999_iter.pth``
  bisenet_ref.safetensors  their eval-mode outputs on deterministic weights:
                           ``out``, ``out16``, ``out32``: the three logits of a [2, 3, 64, 64] input
                           (``NET_INPUT``), every 4th pixel of ``out`` and every 8th of the others
                           (``OUT_SAMPLE``, ``AUX_SAMPLE``); ``labels``: ``out.argmax(1)`` at every
                           pixel, uint8 [2, 64, 64];
                           ``small_*``: ``parse_mask`` of [2, 3, 64, 64] images (``args.size``
                           64: bilinear up to 512, area back down): ``small_hair`` and
                           ``small_face`` as uint8 ``64 * mask`` (exact: means of 8 x 8 blocks),
                           ``small_parse`` the 512 px labels at every 8th pixel;
                           ``large_*``: the same for [1, 3, 576, 576] images (area down to 512,
                           bilinear back up): masks at every 6th pixel (``LARGE_SAMPLE``),
                           float32, and ``large_*_sum`` (float64 sums of the full masks);
                           ``resize_*``: their ``resize`` of a [1, 2, 8, 8] tensor to 12, 5 and 8;
                           ``weight_probe``: the float64 sum of every tensor, in sorted key order.

Deterministic weights depend on key names and shapes only: the tensor for the i-th key in sorted
order is drawn from ``torch.Generator().manual_seed(i)``.
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
MANICLIP_COMMIT = "a727c1e09035fcf3a208c13514505e053c39ad85"  # a copied folder has no .git to ask
NET_INPUT = (2, 3, 64, 64)
SMALL_INPUT = (2, 3, 64, 64)  # parse_mask at args.size 64: enlarged to 512, masks shrunk back
LARGE_INPUT = (1, 3, 576, 576)  # parse_mask at args.size 576: shrunk to 512, masks enlarged back
OUT_SAMPLE = (slice(None), slice(None), slice(1, None, 4), slice(2, None, 4))
AUX_SAMPLE = (slice(None), slice(None), slice(3, None, 8), slice(5, None, 8))
PARSE_SAMPLE = (slice(None), slice(None), slice(4, None, 8), slice(4, None, 8))
LARGE_SAMPLE = (slice(None), slice(None), slice(1, None, 6), slice(4, None, 6))
SEEDS = {"net": 41, "small": 42, "large": 43, "resize": 44}


def deterministic_tensor(key: str, shape: Sequence[int], seed: int) -> torch.Tensor:
    """The fixture value of one state-dict entry from its name, shape and seed. Convolutions:
    N(0, 2 / fan_in) (He), except the class convolutions (``*.conv_out.conv_out.weight``), whose
    rows are then centred; BatchNorm weight 0.8 + 0.16 N(0, 1), bias 0.1 N(0, 1), running_mean
    0.2 N(0, 1), running_var 0.5 + U(0, 1), num_batches_tracked 1000. The BatchNorm gain below 1
    keeps the logits of order 10, and the centred rows keep one class from winning everywhere
    (the features after a ReLU share a large common level)."""
    g = torch.Generator().manual_seed(seed)
    shape = tuple(shape)
    if key.endswith("num_batches_tracked"):
        return torch.tensor(1000)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith("running_mean"):
        return 0.2 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        if key.endswith("weight"):
            return 0.8 + 0.16 * torch.randn(shape, generator=g)
        return 0.1 * torch.randn(shape, generator=g)
    w = torch.randn(shape, generator=g) * math.sqrt(2 / math.prod(shape[1:]))
    if key.endswith("conv_out.conv_out.weight"):
        w = w - w.mean(1, keepdim=True)
    return w


def deterministic_state_dict(shapes: Dict[str, Sequence[int]]) -> Dict[str, torch.Tensor]:
    """Fixture values for every key of ``{key: shape}``."""
    return {k: deterministic_tensor(k, s, i) for i, (k, s) in enumerate(sorted(shapes.items()))}


def deterministic_images(shape: Sequence[int], seed: int) -> torch.Tensor:
    """Smooth images in [-1, 1]: N(0, 1) noise at 8 x 8, enlarged bilinearly to ``shape``, tanh."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(shape[0], shape[1], 8, 8, generator=g)
    return torch.tanh(torch.nn.functional.interpolate(coarse, tuple(shape[2:]), mode="bilinear",
                                                      align_corners=False))


def weight_probe(state_dict: Dict[str, torch.Tensor]) -> torch.Tensor:
    """[len(state_dict)] float64: the sum of every tensor, in sorted key order."""
    return torch.tensor([float(state_dict[k].double().sum()) for k in sorted(state_dict)], dtype=torch.float64)


def their_code(src_dir: str) -> types.SimpleNamespace:
    """Their ``BiSeNet`` class (built without a download) and ``utils.utils``' ``resize`` and
    ``parse_mask``, executed without the rest of that file."""
    import torch.nn.functional as F
    import torch.utils.model_zoo

    torch.utils.model_zoo.load_url = lambda *args, **kwargs: {}  # their Resnet18.init_weight: no ImageNet weights
    sys.path.insert(0, str(src_dir))
    from external.parsing import BiSeNet  # noqa: E402  (theirs, as train.py imports it)

    path = Path(src_dir) / "utils" / "utils.py"
    tree = ast.parse(path.read_text())
    wanted = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("resize", "parse_mask")]
    assert [n.name for n in wanted] == ["resize", "parse_mask"], [n.name for n in wanted]
    ns = {"torch": torch, "F": F, "__name__": "maniclip_utils_functions"}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(path), "exec"), ns)
    return types.SimpleNamespace(BiSeNet=BiSeNet, resize=ns["resize"], parse_mask=ns["parse_mask"])


def _write_keys(path: Path, module: torch.nn.Module) -> None:
    keys = [[k, list(v.shape)] for k, v in module.state_dict().items()]
    head = json.dumps({"source": {"repo": "hwang1996/ManiCLIP", "commit": MANICLIP_COMMIT,
                                  "files": ["external/parsing/bisenet.py", "external/parsing/resnet.py"],
                                  "construction": "BiSeNet(n_classes=19) (train.py init_parsing_model); "
                                                  "external/parsing/models/bisenet.pth"},
                       "note": "Keys and shapes in order, as a current PyTorch names them; num_batches_tracked "
                               "counters are int64 scalars. No DataParallel prefix (their strict load_state_dict "
                               "of the plain file).",
                       "count": len(keys)}, indent=1)[:-2]
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(s)}" for k, s in keys)
    path.write_text(head + ',\n "keys": {\n' + body + "\n }\n}\n")


def main(src_dir: str) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    theirs = their_code(src_dir)
    net = theirs.BiSeNet(n_classes=19)
    _write_keys(HERE / "bisenet_keys.json", net)
    sd = deterministic_state_dict({k: v.shape for k, v in net.state_dict().items()})
    net.load_state_dict(sd)  # strict, as train.py loads bisenet.pth
    net.eval()

    ref = {"weight_probe": weight_probe(sd)}
    with torch.no_grad():
        out, out16, out32 = net(deterministic_images(NET_INPUT, SEEDS["net"]))
    ref.update(out=out[OUT_SAMPLE], out16=out16[AUX_SAMPLE], out32=out32[AUX_SAMPLE],
               labels=out.argmax(1).to(torch.uint8))

    for name, shape in (("small", SMALL_INPUT), ("large", LARGE_INPUT)):
        images = deterministic_images(shape, SEEDS[name])
        args = types.SimpleNamespace(parse_model=net, size=shape[-1])
        hair, face = theirs.parse_mask(args, images)
        with torch.no_grad():
            parse = net(theirs.resize(images, [512, 512]))[0].argmax(1, keepdim=True)
        ref[f"{name}_parse"] = parse[PARSE_SAMPLE].to(torch.uint8)
        if name == "small":
            ref.update(small_hair=(hair * 64).round().to(torch.uint8), small_face=(face * 64).round().to(torch.uint8))
            assert torch.equal(ref["small_hair"].float() / 64, hair) and torch.equal(ref["small_face"].float() / 64, face)
        else:
            ref.update(large_hair=hair[LARGE_SAMPLE], large_face=face[LARGE_SAMPLE],
                       large_hair_sum=hair.double().sum(), large_face_sum=face.double().sum())

    x = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(SEEDS["resize"]))
    ref.update(resize_in=x, resize_12=theirs.resize(x, [12, 12]), resize_5=theirs.resize(x, [5, 5]),
               resize_8=theirs.resize(x, [8, 8]))
    save_file({k: v.contiguous().clone() for k, v in ref.items()}, str(HERE / "bisenet_ref.safetensors"),
              metadata={"maniclip_commit": MANICLIP_COMMIT})


if __name__ == "__main__":
    main(sys.argv[1])
