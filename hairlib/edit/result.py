"""What every editing method returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import torch

__all__ = ["EditResult"]


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
