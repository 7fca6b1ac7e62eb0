"""Strict state-dict loading with errors a person can act on (shared by every network)."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

__all__ = ["load_state_dict_strict"]


def load_state_dict_strict(module: nn.Module, state_dict: Dict[str, torch.Tensor], what: str = "checkpoint") -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with an error that names the missing,
    unexpected and wrongly-shaped keys (a few of each) instead of PyTorch's wall of text."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def few(xs):
            return ", ".join(xs[:6]) + (f" ... (+{len(xs) - 6} more)" if len(xs) > 6 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {few(shapes)}")
        raise ValueError(f"{what} does not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)
