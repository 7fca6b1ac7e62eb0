"""What every editing method returns, and how it picks its settings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import torch

__all__ = ["EditResult", "method_settings"]


@dataclass
class EditResult:
    latents: Union[torch.Tensor, List[torch.Tensor]]  # edited W+ [N, num_ws, D], or StyleSpace (a list per layer)
    images: torch.Tensor  # edited images [N, 3, R, R] in [-1, 1]
    source_images: Optional[torch.Tensor] = None  # the images before the edit
    method: str = ""  # "optimize", "global", "mapper", "hairclip", ...
    text: Any = None  # the prompt(s) or conditions
    losses: List[float] = field(default_factory=list)  # per-step loss (optimisation, training)
    seconds: float = 0.0  # wall time of the edit
    info: Dict[str, Any] = field(default_factory=dict)  # what the method changed (channels touched, ...)

    def __len__(self) -> int:
        return self.images.shape[0]


def method_settings(world, settings, name: str, paper):
    """One method's settings record: ``settings`` None or "world": the world's
    (``world.settings.<name>``); "paper": ``paper`` (the method config's own defaults, the
    authors'); a ``Settings``: its ``<name>``. See ``hairlib.methods.settings``."""
    if settings is None or settings == "world":
        own = getattr(world, "settings", None)
        return getattr(own, name) if own is not None else paper
    if settings == "paper":
        return paper
    if hasattr(settings, name) and not isinstance(settings, str):
        return getattr(settings, name)
    raise ValueError(f"settings must be 'paper', 'world' or a hairlib.methods.settings.Settings, not {settings!r}")
