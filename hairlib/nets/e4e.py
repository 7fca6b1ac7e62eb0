"""e4e (encoder4editing) image -> W+ encoder in the authors' checkpoint layout.

A checkpoint such as ``e4e_ffhq_encode.pt`` holds ``state_dict`` with ``encoder.*`` keys
(this module's ``Encoder4Editing``) and ``decoder.*`` keys (a rosinality StyleGAN2 generator),
plus ``latent_avg`` ([n_styles, 512] for e4e, sometimes [1, 512] or [512]) that is added to the
encoder's codes (pSp's ``start_from_latent_avg``) and ``opts`` (``vars()`` of the training
options: str / int / float / bool / None / list values only, so ``weights_only=True`` reads it;
``stylegan_size`` gives the number of W+ rows). ``Encoder4Editing`` matches the authors' module
numerically on the same weights (tested to < 1e-4; 0.0 measured on CPU).

What differs from the authors' code: no progressive-training stages (we only infer: every delta
is applied, as in their ``ProgressiveStage.Inference``); ``E4E`` resizes inputs that are not
256 px with antialiased bilinear, close to what their test transform (torchvision ``Resize`` on
PIL images) does to aligned 1024 px photos.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from hairlib.nets.irse import get_blocks, make_body, make_input_layer, upsample_add
from hairlib.nets.loading import fill_num_batches_tracked, load_state_dict_strict, read_checkpoint
from hairlib.nets.stylegan2 import EqualLinear, infer_generator_config, load_generator

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
        # indices of the last unit of the 128-, 256- and 512-channel stages (6, 20, 23 for IR-SE50):
        # their outputs c1 [N, 128, 64, 64], c2 [N, 256, 32, 32], c3 [N, 512, 16, 16] feed the FPN
        ends = [sum(len(stage) for stage in get_blocks(num_layers)[:k + 1]) - 1 for k in range(4)]
        self.tap_c1, self.tap_c2, self.tap_c3 = ends[1], ends[2], ends[3]
        self.style_count = n_styles
        self.styles = nn.ModuleList()
        for i in range(n_styles):
            spatial = 16 if i < COARSE_IND else 32 if i < MIDDLE_IND else 64
            self.styles.append(GradualStyleBlock(512, 512, spatial))
        self.latlayer1 = nn.Conv2d(256, 512, kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(128, 512, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, 3, 256, 256] in [-1, 1] -> codes [N, n_styles, 512] (add latent_avg for W+)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            # the style blocks reduce 16/32/64 px maps to 1x1: other sizes would mix up the batch
            raise ValueError(f"Encoder4Editing takes [N, 3, {INPUT_SIZE}, {INPUT_SIZE}] images, got "
                             f"{tuple(x.shape)} (E4E resizes other sizes)")
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


def _latent_avg_rows(latent_avg: torch.Tensor, n_styles: int) -> torch.Tensor:
    """latent_avg as [n_styles, 512] or [1, 512] float; ValueError if it fits neither."""
    la = latent_avg.detach().float()
    if la.ndim == 1:
        la = la[None]
    if la.ndim != 2 or la.shape[-1] != 512 or la.shape[0] not in (1, n_styles):
        raise ValueError(f"latent_avg of shape {tuple(latent_avg.shape)} does not fit an encoder "
                         f"with {n_styles} styles (expected [{n_styles}, 512], [1, 512] or [512])")
    return la


class E4E(nn.Module):
    """images [N, 3, H, W] in [-1, 1] (any size; resized to 256 with antialiased bilinear)
    -> W+ [N, n_styles, 512] = encoder codes + latent_avg."""

    def __init__(self, encoder: Encoder4Editing, latent_avg: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("latent_avg", _latent_avg_rows(latent_avg, encoder.style_count).clone())

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
    ``latent_avg`` and the decoder's size; anything that does not fit raises ValueError (checked
    before the encoder's ~1 GB of weights are copied). ``latent_avg`` is added as the authors'
    ``pSp.forward`` does with ``opts['start_from_latent_avg']`` (true for the released
    checkpoints); a checkpoint trained without it may omit it.
    """
    ckpt, name = read_checkpoint(path_or_dict, "e4e checkpoint")
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
    if ckpt.get("latent_avg") is not None:
        latent_avg = ckpt["latent_avg"]
    elif isinstance(opts, dict) and opts.get("start_from_latent_avg") is False:
        latent_avg = torch.zeros(1, 512)  # trained without it: the codes are W+ as they are
    else:
        raise ValueError(f"{name}: no 'latent_avg'; e4e codes are offsets from it")
    _latent_avg_rows(latent_avg, n_styles)
    dec_sd = _sub(sd, "decoder") if with_generator else None
    if with_generator:
        if not dec_sd:
            raise ValueError(f"{name}: no 'decoder.*' keys to build a generator from")
        dec_cfg = infer_generator_config(dec_sd)
        if dec_cfg.num_ws != n_styles:
            raise ValueError(f"{name}: decoder of {dec_cfg.size} px ({dec_cfg.num_ws} W+ rows) does not fit "
                             f"the encoder's {n_styles} styles")

    with torch.device("meta"):  # ~270M parameters at 1024 px: skip the random init the checkpoint overwrites
        encoder = Encoder4Editing(50, "ir_se", n_styles=n_styles)
    encoder = encoder.to_empty(device="cpu")
    load_state_dict_strict(encoder, fill_num_batches_tracked(encoder, enc_sd), what=f"{name}[encoder]")
    e4e = E4E(encoder, latent_avg).to(device).eval().requires_grad_(False)
    if not with_generator:
        return e4e

    g_ckpt = {"g_ema": dec_sd}
    la = latent_avg.detach().float().reshape(-1, latent_avg.shape[-1])
    if torch.allclose(la, la[:1].expand_as(la)):  # rows identical: a single w average
        g_ckpt["latent_avg"] = la[0]
    return e4e, load_generator(g_ckpt, config=dec_cfg, device=device)
