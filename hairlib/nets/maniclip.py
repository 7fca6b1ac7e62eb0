"""ManiCLIP's text-driven W+ editor (Wang et al. 2022), in the authors' key layout.

The authors' ``TransModel`` (``train.py`` of hwang1996/ManiCLIP) maps one w [N, D] and a CLIP
sentence embedding [N, E] to a W+ offset [N, num_ws, D]:

* text: ``t = text_map(e); t = t + text_map(t); t = norm1(t)`` (``text_map`` is Linear + ReLU,
  the same module applied twice); the memory is this one vector, a sequence of length 1;
* rows: w repeated over the num_ws rows, seq-first [num_ws, N, D], plus a fixed sinusoidal
  positional encoding (buffer ``pos_encoder.pe`` [pe_max_len, 1, D], max_len 20, sin on even
  and cos on odd channels, its own dropout 0.1), then ``x = x_map(x); x = x + x_map(x);
  x = norm2(x)`` (``x_map`` also Linear + ReLU applied twice);
* ``torch.nn.TransformerDecoder`` of post-norm ``TransformerDecoderLayer`` (ReLU, seq-first,
  dropout 0.2) with a final LayerNorm ``decoder.norm``; no output linear and no scaling: the
  decoder's output, batch-first, is the offset.

With a memory of length 1 the cross-attention weights are all 1, so each layer adds the same
text vector to every row. The authors apply the offset as ``w + offset`` (factor 1) on the
untruncated w from the mapping network; their generator then truncates the edited W+ (0.7).

Their ``TransModel()`` defaults to 4 heads and 4 layers, but ``train.py`` and ``generate.py``
build ``TransModel(nhead=8, num_decoder_layers=6)``: that is the released
``pretrained_edit_model.pth.tar`` and ``ManiCLIPConfig()``'s default here.

Because of the residual ``x + x_map(x)`` on w and the offset being added to w, the style width,
the CLIP width and ``d_model`` are one number (512 for FFHQ at 256 px with 14 rows; the mini
world has 10 rows of 128 and a 128-d CLIP).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Dict, Optional, Union

import torch
from torch import nn

from hairlib.nets.loading import load_state_dict_strict, read_checkpoint

__all__ = ["ManiCLIPConfig", "PositionalEncoding", "ManiCLIPEditor", "maniclip_state", "load_maniclip",
           "CLIP_PREFIX"]

CLIP_PREFIX = "clip_model."  # the frozen OpenAI CLIP the authors kept inside TransModel


@dataclass(frozen=True)
class ManiCLIPConfig:
    """Sizes of the editor; the defaults are the released 256 px FFHQ model."""
    num_ws: int = 14  # rows of W+ (the generator's)
    style_dim: int = 512  # width of w (the generator's)
    d_model: int = 512  # transformer width; equals style_dim and clip_dim
    heads: int = 8  # attention heads (not visible in a state dict)
    layers: int = 6  # decoder layers
    ff: int = 2048  # feed-forward width
    dropout: float = 0.2  # decoder dropout
    clip_dim: int = 512  # CLIP sentence-embedding width
    pe_max_len: int = 20  # rows of the positional-encoding buffer
    pe_dropout: float = 0.1  # dropout after the positional encoding
    activation: str = "relu"  # decoder feed-forward activation

    def __post_init__(self):
        if not (self.style_dim == self.d_model == self.clip_dim):
            raise ValueError(f"ManiCLIP needs style_dim == d_model == clip_dim (x + x_map(x) on w, text_map "
                             f"applied twice, offset added to w); got {self.style_dim}, {self.d_model}, {self.clip_dim}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if not 1 <= self.num_ws <= self.pe_max_len:
            raise ValueError(f"num_ws must be in [1, pe_max_len={self.pe_max_len}], got {self.num_ws}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ManiCLIPConfig":
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown ManiCLIPConfig fields: {unknown}")
        cast = {"int": int, "float": float, "str": str}
        return cls(**{k: cast[known[k]](v) for k, v in d.items()})


class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoid ``pe`` [max_len, 1, D] to seq-first x [L, N, D], then dropout."""

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 20):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, 1, d_model)
        pe[:, 0, 0::2] = torch.sin(position * div_term)
        pe[:, 0, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[:x.size(0)])


def _linear_relu(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU())


class ManiCLIPEditor(nn.Module):
    """(w [N, style_dim], CLIP text embedding [N or 1, clip_dim]) -> W+ offset [N, num_ws, style_dim].

    The embedding is ``encode_text`` of the tokens as CLIP returns it (not unit-normalised).
    ``edit`` returns ``w`` repeated over the rows plus ``strength`` times the offset."""

    def __init__(self, config: Optional[ManiCLIPConfig] = None):
        super().__init__()
        self.config = c = config or ManiCLIPConfig()
        self.pos_encoder = PositionalEncoding(c.d_model, c.pe_dropout, c.pe_max_len)
        self.x_map = _linear_relu(c.d_model)
        self.text_map = _linear_relu(c.d_model)
        self.norm1 = nn.LayerNorm(c.d_model)
        self.norm2 = nn.LayerNorm(c.d_model)
        layer = nn.TransformerDecoderLayer(c.d_model, c.heads, c.ff, c.dropout, c.activation,
                                           batch_first=False, norm_first=False)
        self.decoder = nn.TransformerDecoder(layer, c.layers, nn.LayerNorm(c.d_model))

    def forward(self, w: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        c = self.config
        if w.ndim != 2 or w.shape[1] != c.style_dim:
            raise ValueError(f"w must be [N, {c.style_dim}], got {tuple(w.shape)}")
        t = text_embedding.to(device=w.device, dtype=w.dtype).reshape(-1, c.clip_dim)
        if t.shape[0] not in (1, w.shape[0]):
            raise ValueError(f"text embedding must be [{w.shape[0]} or 1, {c.clip_dim}], got {tuple(text_embedding.shape)}")
        t = t.expand(w.shape[0], -1)

        t = self.text_map(t)
        t = t + self.text_map(t)
        t = self.norm1(t)

        x = w.unsqueeze(1).repeat(1, c.num_ws, 1).transpose(0, 1)  # [num_ws, N, D]
        x = self.pos_encoder(x)
        x = self.x_map(x)
        x = x + self.x_map(x)
        x = self.norm2(x)

        out = self.decoder(tgt=x, memory=t.unsqueeze(1).transpose(0, 1))  # memory [1, N, D]
        return out.transpose(0, 1)

    def edit(self, w: torch.Tensor, text_embedding: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """W+ [N, num_ws, style_dim] = w on every row + strength * offset (the authors use 1)."""
        return w.unsqueeze(1).repeat(1, self.config.num_ws, 1) + strength * self(w, text_embedding)


def maniclip_state(ckpt: Dict) -> Dict[str, torch.Tensor]:
    """The editor's own weights from a ManiCLIP checkpoint dict (``{"state_dict": {...}, "epoch",
    "optimizer"}`` as ``train.py`` saves it, or a bare state dict). DataParallel ``module.``
    prefixes are stripped; the frozen CLIP stored beside the editor (``clip_model.*``) is left out
    on purpose (hairlib brings its own CLIP). Any other unknown key is kept, so that strict
    loading names it."""
    sd = ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), dict) else ckpt
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return {k: v for k, v in sd.items() if not k.startswith(CLIP_PREFIX)}


def load_maniclip(path_or_state_dict: Union[str, os.PathLike, Dict], device="cpu",
                  config: Optional[ManiCLIPConfig] = None) -> ManiCLIPEditor:
    """A ``ManiCLIPEditor`` in eval mode from the authors' ``.pth.tar`` (read with
    ``weights_only=True``) or an already-loaded dict, loaded strictly. ``config`` defaults to the
    released model (14 rows, 8 heads, 6 layers); the number of heads cannot be read from a
    state dict, so a model trained with other sizes needs its config."""
    ckpt, name = read_checkpoint(path_or_state_dict, "ManiCLIP checkpoint")
    model = ManiCLIPEditor(config)
    try:
        load_state_dict_strict(model, maniclip_state(ckpt), what=name)
    except ValueError as e:
        raise ValueError(f"{e} (config: {model.config.to_dict()}; pass config= for a model of other sizes)") from None
    return model.to(device).eval()
