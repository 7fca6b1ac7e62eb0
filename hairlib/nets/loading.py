"""Strict state-dict loading with errors a person can act on (shared by every network)."""
from __future__ import annotations

import os
from typing import Any, Dict, Tuple, Union

import torch
from torch import nn

from hairlib.atomic import atomic_path, sha256_file

__all__ = ["load_state_dict_strict", "read_checkpoint", "fill_num_batches_tracked", "save_with_meta", "read_with_meta",
           "load_safetensors", "DamagedWeightsError"]


class DamagedWeightsError(ValueError):
    """A weights file that cannot be read, or whose sha256 is not the one recorded beside it."""


def _fix(path) -> str:
    return (f"if it is one of hairlib's own files, reinstall hairlib (`pip install --force-reinstall hairlib`, or "
            f"`git checkout -- {path}` in a clone); if you trained it, train or export it again")


def load_safetensors(path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """(tensors, header metadata) of a safetensors file, checked first against the sha256 that
    its ``.json`` beside it records (hairlib's shipped weights all have one). A damaged,
    truncated or unreadable file raises ``DamagedWeightsError`` naming it and the fix."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    path = Path(path)
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        try:
            expected = json.loads(sidecar.read_text()).get("sha256")
        except (OSError, ValueError) as e:
            raise DamagedWeightsError(f"{sidecar} is unreadable ({e}); {_fix(sidecar)}") from None
        if expected:
            actual = sha256_file(path)
            if actual != expected:
                raise DamagedWeightsError(f"{path} is damaged: its sha256 is {actual[:16]}..., {sidecar.name} records "
                                          f"{expected[:16]}... ({path.stat().st_size} bytes); {_fix(path)}")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # safetensors' own errors name neither the file nor a fix
        raise DamagedWeightsError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e}); "
                                  f"{_fix(path)}") from None


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


def read_checkpoint(path_or_ckpt: Union[str, os.PathLike, Dict[str, Any]], default_name: str) -> Tuple[Dict[str, Any], str]:
    """(checkpoint dict, name for messages) from a path, read with ``torch.load(weights_only=True)``,
    or from an already-loaded dict (named ``default_name``). A missing file raises
    FileNotFoundError; an unreadable one, or one that is not a dict, a ValueError naming it."""
    if isinstance(path_or_ckpt, dict):
        return path_or_ckpt, default_name
    name = str(path_or_ckpt)
    try:
        ckpt = torch.load(name, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"{name}: cannot be read as a PyTorch checkpoint with weights_only=True "
                         f"({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{name}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt, name


def fill_num_batches_tracked(module: nn.Module, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Checkpoints written by old PyTorch (< 0.4.1) lack BatchNorm's ``num_batches_tracked``;
    add zeros for those (they do not affect eval) so strict loading still checks everything else."""
    out = dict(state_dict)
    for k, v in module.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in out and k[:-len("num_batches_tracked")] + "running_mean" in out:
            out[k] = torch.zeros_like(v)
    return out


def save_with_meta(module: nn.Module, path, meta: Dict[str, Any]):
    """A module's weights as safetensors with ``meta`` (JSON) in the header, written atomically."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(tmp),
                  metadata={"hairlib": json.dumps(meta)})
    return path


def read_with_meta(path) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """(state dict, meta) of a file written by ``save_with_meta`` (checked as ``load_safetensors``)."""
    import json

    sd, header = load_safetensors(path)
    return sd, json.loads(header.get("hairlib", "{}"))
