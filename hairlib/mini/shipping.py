"""Shipped mini-world weights: ``hairlib/mini/weights/<name>.safetensors`` + ``<name>.json``.

The JSON beside each file holds the network's config (enough to rebuild it), the recipe that
produced it, its measured quality and when it was exported.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

from torch import nn

__all__ = ["WEIGHTS_DIR", "save_shipped", "load_shipped"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def save_shipped(name: str, model: nn.Module, meta: Dict[str, Any], dest: Path = WEIGHTS_DIR) -> Path:
    """Write ``model``'s state dict (atomically) and ``meta`` (+ export time) as ``name``."""
    from safetensors.torch import save_file

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f"{name}.safetensors.part"
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(dest / f"{name}.safetensors")
    meta = dict(meta, exported=time.strftime("%Y-%m-%d %H:%M"))
    (dest / f"{name}.json").write_text(json.dumps(meta, indent=2))
    return dest / f"{name}.safetensors"


def load_shipped(name: str, build: Callable[[Dict[str, Any]], nn.Module], dest: Path = WEIGHTS_DIR,
                 device="cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild ``name`` with ``build(meta)``, load its weights strictly; eval mode, frozen."""
    from safetensors.torch import load_file

    from hairlib.nets.loading import load_state_dict_strict

    dest = Path(dest)
    path = dest / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"mini-world weights {path} are missing; train them with "
                                f"`python -m hairlib.mini.train_{name}` or reinstall hairlib")
    meta = json.loads((dest / f"{name}.json").read_text())
    model = build(meta)
    load_state_dict_strict(model, load_file(str(path)), what=str(path))
    return model.to(device).eval().requires_grad_(False), meta
