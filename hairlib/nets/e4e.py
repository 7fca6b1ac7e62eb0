"""e4e (encoder4editing) image -> W+ encoder in the authors' checkpoint layout.

A checkpoint such as ``e4e_ffhq_encode.pt`` holds ``state_dict`` with ``encoder.*`` keys
(this module's ``Encoder4Editing``) and ``decoder.*`` keys (a rosinality StyleGAN2 generator),
plus ``latent_avg`` ([n_styles, 512] for e4e, sometimes [1, 512] or [512]) that is added to the
encoder's codes (pSp's ``start_from_latent_avg``) and ``opts`` (with ``stylegan_size``).
"""
from __future__ import annotations

import math
import os
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from hairlib.nets.irse import fill_num_batches_tracked, make_body, make_input_layer, upsample_add
from hairlib.nets.loading import load_state_dict_strict
from hairlib.nets.stylegan2 import EqualLinear

__all__ = ["GradualStyleBlock", "Encoder4Editing", "E4E", "load_e4e", "n_styles_for_size"]

INPUT_SIZE = 256
COARSE_IND = 3  # styles [0, 3) read the 16x16 features
MIDDLE_IND = 7  # styles [3, 7) the 32x32 FPN level; the rest the 64x64 level


def n_styles_for_size(size: int) -> int:
    """Rows of W+ for a StyleGAN2 of ``size`` px (18 at 1024, 14 at 256)."""
    return 2 * int(math.log2(size)) - 2


class GradualStyleBlock(nn.Module):
    """Stride-2 conv3x3 + LeakyReLU repeated log2(spatial) times (to 1x1), then an EqualLinear.
    Keys: ``convs.{0,2,4,...}.weight/bias`` and ``linear.weight/bias``."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        self.spatial = spatial
        layers = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, kernel_size=3, stride=2, padding=1),
                       nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))


class Encoder4Editing(nn.Module):
    """IR-SE50 trunk with a small FPN; predicts one base w (style 0 on 16x16 features) plus a
    delta for every further W+ row. Input 256 px in [-1, 1]; output codes [N, n_styles, 512]
    (without latent_avg)."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18):
        super().__init__()
        if n_styles < 1:
            raise ValueError(f"n_styles must be positive, got {n_styles}")
        self.input_layer = make_input_layer()
        self.body = make_body(num_layers, mode)
        # indices of the last unit of the 128-, 256- and 512-channel stages
        ends = [sum(n) - 1 for n in _cumulative_units(num_layers)]
        self.tap_c1, self.tap_c2, self.tap_c3 = ends[1], ends[2], ends[3]
        self.style_count = n_styles
        self.styles = nn.ModuleList()
        for i in range(n_styles):
            spatial = 16 if i < COARSE_IND else 32 if i < MIDDLE_IND else 64
            self.styles.append(GradualStyleBlock(512, 512, spatial))
        self.latlayer1 = nn.Conv2d(256, 512, kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(128, 512, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        c1 = c2 = c3 = None
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == self.tap_c1:
                c1 = x
            elif i == self.tap_c2:
                c2 = x
            elif i == self.tap_c3:
                c3 = x
        w0 = self.styles[0](c3)
        rows = [w0]
        features, p2 = c3, None
        for i in range(1, self.style_count):
            if i == COARSE_IND:
                p2 = upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == MIDDLE_IND:
                features = upsample_add(p2, self.latlayer2(c1))
            rows.append(w0 + self.styles[i](features))
        return torch.stack(rows, dim=1)


def _cumulative_units(num_layers: int):
    from hairlib.nets.irse import get_blocks
    blocks = get_blocks(num_layers)
    return [[len(b) for b in blocks[:k + 1]] for k in range(len(blocks))]


class E4E(nn.Module):
    """images [N, 3, H, W] in [-1, 1] (any size; resized to 256 with antialiased bilinear)
    -> W+ [N, n_styles, 512] = encoder codes + latent_avg."""

    def __init__(self, encoder: Encoder4Editing, latent_avg: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        n = encoder.style_count
        la = latent_avg.detach().float()
        if la.ndim == 1:
            la = la[None]
        if la.ndim != 2 or la.shape[-1] != 512 or la.shape[0] not in (1, n):
            raise ValueError(f"latent_avg of shape {tuple(latent_avg.shape)} does not fit an encoder "
                             f"with {n} styles (expected [{n}, 512], [1, 512] or [512])")
        self.register_buffer("latent_avg", la.clone())

    @property
    def n_styles(self) -> int:
        return self.encoder.style_count

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
        x = images.float()
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                              antialias=True)
        return self.encoder(x) + self.latent_avg[None]

    def train(self, mode: bool = True):
        return super().train(False)  # inference only: BatchNorm statistics stay fixed


def _sub(sd: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}


def load_e4e(path_or_dict: Union[str, os.PathLike, dict], device="cpu", with_generator: bool = False
             ) -> Union[E4E, Tuple[E4E, nn.Module]]:
    """Load an e4e checkpoint (path, read with ``weights_only=True``, or an already-loaded dict).

    Returns a frozen ``E4E``; with ``with_generator=True`` also the generator built from the
    ``decoder.*`` keys by ``hairlib.nets.stylegan2.load_generator``. The number of W+ rows comes
    from the checkpoint (its ``styles.N`` blocks) and must agree with ``opts['stylegan_size']``,
    ``latent_avg`` and the decoder's size; anything that does not fit raises ValueError.
    """
    if isinstance(path_or_dict, dict):
        ckpt, name = path_or_dict, "e4e checkpoint"
    else:
        name = str(path_or_dict)
        ckpt = torch.load(name, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{name}: expected a dict checkpoint, got {type(ckpt).__name__}")
    sd = ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), dict) else ckpt
    enc_sd = _sub(sd, "encoder")
    if not enc_sd:
        raise ValueError(f"{name}: no 'encoder.*' keys; this does not fit an e4e checkpoint "
                         f"(top-level keys: {sorted(ckpt)[:8]})")
    style_ids = {int(k.split(".")[1]) for k in enc_sd if k.startswith("styles.") and k.split(".")[1].isdigit()}
    n_styles = max(style_ids) + 1 if style_ids else 0
    opts = ckpt.get("opts")
    size = opts.get("stylegan_size") if isinstance(opts, dict) else None
    if size is not None and n_styles_for_size(int(size)) != n_styles:
        raise ValueError(f"{name}: encoder with {n_styles} styles does not fit opts stylegan_size={size} "
                         f"(expects {n_styles_for_size(int(size))})")
    if n_styles == 0:
        raise ValueError(f"{name}: encoder state dict has no 'styles.N' blocks; it does not fit Encoder4Editing")
    encoder = Encoder4Editing(50, "ir_se", n_styles=n_styles)
    load_state_dict_strict(encoder, fill_num_batches_tracked(encoder, enc_sd), what=f"{name}[encoder]")
    if "latent_avg" not in ckpt or ckpt["latent_avg"] is None:
        raise ValueError(f"{name}: no 'latent_avg'; e4e codes are offsets from it")
    latent_avg = ckpt["latent_avg"]
    e4e = E4E(encoder, latent_avg).to(device).eval().requires_grad_(False)
    if not with_generator:
        return e4e

    from hairlib.nets.stylegan2 import load_generator
    dec_sd = _sub(sd, "decoder")
    if not dec_sd:
        raise ValueError(f"{name}: no 'decoder.*' keys to build a generator from")
    g_ckpt = {"g_ema": dec_sd}
    la = latent_avg.detach().float().reshape(-1, latent_avg.shape[-1])
    if torch.allclose(la, la[:1].expand_as(la)):  # rows identical: a single w average
        g_ckpt["latent_avg"] = la[0]
    generator = load_generator(g_ckpt, device=device)
    if generator.n_latent != n_styles:
        raise ValueError(f"{name}: decoder of {generator.size} px ({generator.n_latent} W+ rows) does not fit "
                         f"the encoder's {n_styles} styles")
    return e4e, generator
