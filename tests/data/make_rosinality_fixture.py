"""Regenerate the rosinality parity fixtures in this folder (not run by the tests).

Needs a checkout of rosinality/stylegan2-pytorch (commit bef283a) whose ``op`` package can run
on CPU: its ``op/*.py`` compile CUDA at import, so point ROSINALITY at a copy whose ``load(...)``
calls are removed (their CPU code paths are pure PyTorch). Nothing of theirs is committed here.

    python tests/data/make_rosinality_fixture.py /path/to/rosinality-cpu-copy

Writes:
  rosinality_keys.json        every g_ema / discriminator key and shape at 1024 px and 256 px
                              (config-f: style_dim 512, n_mlp 8, channel_multiplier 2)
  rosinality_ref_32px.safetensors  a narrowed 32 px model (all channels 32, style_dim 32,
                              n_mlp 2) with random weights, inputs and rosinality's outputs
"""
import json
import re
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


def main(rosinality_dir: str) -> None:
    src = (Path(rosinality_dir) / "model.py").read_text()
    sys.path.insert(0, rosinality_dir)
    import model as R  # noqa: E402

    keys = {}
    for size in (1024, 256):
        keys[f"g{size}"] = {k: list(v.shape) for k, v in R.Generator(size, 512, 8, 2).state_dict().items()}
        keys[f"d{size}"] = {k: list(v.shape) for k, v in R.Discriminator(size, 2).state_dict().items()}
    (HERE / "rosinality_keys.json").write_text(json.dumps(keys, indent=0))

    # Narrow every channel count to 32 so the fixture stays small; the computation is unchanged.
    narrow = re.sub(r"(\d+): (512|\d+ \* channel_multiplier),", r"\1: 32,", src)
    tmp = Path(tempfile.mkdtemp())
    (tmp / "model_narrow.py").write_text(narrow)
    sys.path.insert(0, str(tmp))
    import model_narrow as N  # noqa: E402

    torch.manual_seed(1234)
    g = N.Generator(32, 32, 2, 1).eval()
    d = N.Discriminator(32, 1).eval()
    with torch.no_grad():
        for p in list(g.parameters()) + list(d.parameters()):
            if p.ndim <= 2 and p.numel() < 64 or p.shape == (1,):
                p.normal_(0, 0.2)  # non-zero biases and noise strengths
    z = torch.randn(3, 32)
    wplus = torch.randn(3, g.n_latent, 32)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        img_z, _ = g([z], randomize_noise=False)
        img_trunc, _ = g([z], randomize_noise=False, truncation=0.5, truncation_latent=g.mean_latent(64)[:1] * 0)
        img_wplus, _ = g([wplus], input_is_latent=True, randomize_noise=False)
        d_out = d(x)
    tensors = {f"g.{k}": v.contiguous() for k, v in g.state_dict().items()}
    tensors.update({f"d.{k}": v.contiguous() for k, v in d.state_dict().items()})
    tensors.update(z=z, wplus=wplus, x=x, img_z=img_z, img_trunc=img_trunc, img_wplus=img_wplus, d_out=d_out)
    save_file(tensors, str(HERE / "rosinality_ref_32px.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
