"""HairCLIP's conditional hair mapper (Wei et al. 2022), in the authors' key layout.

Three sub-mappers over the rows of W+ — coarse (rows 0-3) and medium (4-7) driven by the
hairstyle condition, fine (8 on) by the colour condition. Each is PixelNorm then 5 modulation
modules: ``fc`` (Linear), ``norm`` (LayerNorm over [rows, D], no affine), then
``x * (1 + gamma(e)) + beta(e)`` and leaky-ReLU, where ``gamma_function`` / ``beta_function``
are Linear, LayerNorm, LeakyReLU, Linear of the condition embedding e. The edit is
``w + 0.1 * M(w, e_style, e_color)``.

Facts from the authors' ``mapper/latent_mappers.py`` kept exactly:
* the sub-mappers are ``course_mapping`` (sic), ``medium_mapping``, ``fine_mapping``, each with
  ``modulation_module_list.{0..4}``; the authors' checkpoint ``hairclip.pt`` holds them under
  ``mapper.`` in ``state_dict``, beside the whole frozen CLIP (``mapper.clip_model.*``, their
  CLIP was a sub-module) and the generator (``decoder.*``);
* PixelNorm normalises over dim 1 of the [N, rows, D] slice (the rows), as rosinality's
  PixelNorm does on a 3-D tensor; leaky-ReLU slopes are PyTorch's default 0.01;
* a sub-mapper whose condition is absent runs every module's ``fc`` + ``norm`` and skips the
  modulation and the activation (their ``cut_flag``): its offset is not zero. (PAPERS.md says
  it stops after the first module; the code applies all five, and the code wins.)
* the conditions are CLIP embeddings as CLIP returns them, not unit-normalised: text from
  ``encode_text`` of the raw tokens; images resized to 224 by AdaptiveAvgPool2d, mapped from
  [-1, 1] to [0, 1], CLIP-normalised, ``encode_image``.

Sizes follow the World: 18 rows and 512-d embeddings for FFHQ at 1024 px; the mini world has
10 rows of 128 and a 128-d CLIP.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from hairlib.nets.mappers import group_slices

__all__ = ["ModulationModule", "SubHairMapper", "HairMapper", "load_hair_mapper_state"]


class ModulationModule(nn.Module):
    def __init__(self, rows: int, dim: int = 512, embed_dim: int = 512):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm([rows, dim], elementwise_affine=False)
        self.gamma_function = nn.Sequential(nn.Linear(embed_dim, dim), nn.LayerNorm([dim]), nn.LeakyReLU(),
                                            nn.Linear(dim, dim))
        self.beta_function = nn.Sequential(nn.Linear(embed_dim, dim), nn.LayerNorm([dim]), nn.LeakyReLU(),
                                           nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor, embedding: Optional[torch.Tensor]) -> torch.Tensor:
        """x [N, rows, dim]; embedding [N, rows, embed_dim] or None (condition absent)."""
        x = self.norm(self.fc(x))
        if embedding is None:
            return x
        gamma = self.gamma_function(embedding.float())
        beta = self.beta_function(embedding.float())
        return F.leaky_relu(x * (1 + gamma) + beta, 0.01)


class SubHairMapper(nn.Module):
    def __init__(self, rows: int, dim: int = 512, embed_dim: int = 512, n_modules: int = 5):
        super().__init__()
        self.rows = rows
        self.modulation_module_list = nn.ModuleList([ModulationModule(rows, dim, embed_dim) for _ in range(n_modules)])

    def forward(self, x: torch.Tensor, embedding: Optional[torch.Tensor]) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)  # rosinality's PixelNorm on [N, rows, D]
        for m in self.modulation_module_list:
            x = m(x, embedding)
        return x


class HairMapper(nn.Module):
    """(W+ [N, num_ws, dim], hairstyle embedding [N, E] or None, colour embedding [N, E] or None)
    -> offsets [N, num_ws, dim]; ``edit`` returns ``w + strength * offsets``, by default at
    ``self.strength``: the strength it was trained at (0.1, the paper's, unless its file says).
    ``self.mask_reference``: whether it reads a reference image's hair region only (the paper's)
    or the whole image (``hairlib.methods.hairclip``)."""

    def __init__(self, num_ws: int = 18, dim: int = 512, embed_dim: int = 512):
        super().__init__()
        self.num_ws, self.dim, self.embed_dim = num_ws, dim, embed_dim
        self.strength = 0.1
        self.mask_reference = True
        sl = group_slices(num_ws)
        self.course_mapping = SubHairMapper(sl["coarse"].stop - sl["coarse"].start, dim, embed_dim)
        self.medium_mapping = SubHairMapper(sl["medium"].stop - sl["medium"].start, dim, embed_dim)
        self.fine_mapping = SubHairMapper(sl["fine"].stop - sl["fine"].start, dim, embed_dim)

    def forward(self, wplus: torch.Tensor, hairstyle: Optional[torch.Tensor] = None,
                color: Optional[torch.Tensor] = None) -> torch.Tensor:
        if wplus.ndim != 3 or wplus.shape[1:] != (self.num_ws, self.dim):
            raise ValueError(f"W+ must be [N, {self.num_ws}, {self.dim}], got {tuple(wplus.shape)}")
        sl = group_slices(self.num_ws)
        n = wplus.shape[0]

        def rows(e, s):
            if e is None:
                return None
            e = e.to(wplus.device).reshape(-1, self.embed_dim).expand(n, -1)
            return e[:, None].expand(-1, s.stop - s.start, -1)
        return torch.cat([self.course_mapping(wplus[:, sl["coarse"]], rows(hairstyle, sl["coarse"])),
                          self.medium_mapping(wplus[:, sl["medium"]], rows(hairstyle, sl["medium"])),
                          self.fine_mapping(wplus[:, sl["fine"]], rows(color, sl["fine"]))], dim=1)

    def edit(self, wplus: torch.Tensor, hairstyle: Optional[torch.Tensor] = None, color: Optional[torch.Tensor] = None,
             strength: Optional[float] = None) -> torch.Tensor:
        return wplus + (self.strength if strength is None else strength) * self(wplus, hairstyle, color)


def load_hair_mapper_state(ckpt: Dict) -> Dict[str, torch.Tensor]:
    """The mapper's own weights from a HairCLIP checkpoint dict (``{"state_dict": {...}}`` with
    ``mapper.*`` keys, or a bare mapper state dict). The frozen CLIP the authors stored inside the
    mapper (``mapper.clip_model.*``) is left out on purpose: hairlib brings its own CLIP. Any
    other unknown key is kept, so that strict loading names it."""
    sd = ckpt.get("state_dict", ckpt)
    if any(k.startswith("mapper.") for k in sd):
        sd = {k[len("mapper."):]: v for k, v in sd.items() if k.startswith("mapper.")}
    return {k: v for k, v in sd.items() if not k.startswith("clip_model.")}
