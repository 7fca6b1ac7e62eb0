"""Atomic, resumable training checkpoints.

A checkpoint is written to ``<path>.part`` and renamed into place with ``os.replace``, so an
interrupted run never leaves a truncated file; the previous checkpoint is kept as
``<path>.prev`` until the new one is in place. Loading uses ``weights_only=True``: a
checkpoint holds tensors, numbers, strings and dicts/lists of them, never code.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from safetensors.torch import load_file, save_file

from hairlib.atomic import atomic_path, sha256_file

__all__ = ["save_atomic", "load_checkpoint", "pack_checkpoint", "unpack_checkpoint", "append_log", "read_log",
           "stop_on_signals"]


def save_atomic(obj: Dict[str, Any], path) -> Path:
    """torch.save ``obj`` to ``path`` atomically (write .part, fsync, keep the old file as .prev,
    rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, path.with_name(path.name + ".prev"))
    return path


def load_checkpoint(path, map_location="cpu") -> Optional[Dict[str, Any]]:
    """The checkpoint at ``path`` (or its ``.prev`` if the latest is unreadable); None if neither exists."""
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".prev")):
        if candidate.exists():
            try:
                return torch.load(candidate, map_location=map_location, weights_only=True)
            except Exception as e:  # a damaged latest file: fall back to the previous one
                last = e
                continue
    if path.exists():
        raise RuntimeError(f"{path}: checkpoint unreadable ({last})")
    return None


def _flatten(obj, prefix: str, tensors: Dict[str, torch.Tensor]):
    """obj with its tensors moved into ``tensors`` (keys ``prefix/...``), each replaced by
    {"__tensor__": key}; tuples become lists."""
    if torch.is_tensor(obj):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"{prefix}: only str or int keys can be packed")
        return {"__dict__": [[k, _flatten(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{prefix}: cannot pack a {type(obj).__name__}")


def _unflatten(obj, tensors: Dict[str, torch.Tensor]):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def pack_checkpoint(state: Dict[str, Any], folder) -> Path:
    """A training state (``save_atomic``'s kind) as a folder to keep in git: one safetensors file
    per top-level entry (a network, an optimiser: each far smaller than the whole), and
    ``state.json`` with everything else and each file's sha256. Adam's first moments are left
    out where beta1 is 0 (each step overwrites them with the gradient), so the packed state
    resumes as the run would have gone on, to float rounding. Written beside the folder and
    renamed into place."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tree, files = {}, {}
    for key, value in state.items():
        if isinstance(value, dict) and "param_groups" in value and all(g["betas"][0] == 0 for g in value["param_groups"]):
            value = {**value, "state": {i: {k: v for k, v in st.items() if k != "exp_avg"} for i, st in value["state"].items()}}
        tensors: Dict[str, torch.Tensor] = {}
        tree[key] = _flatten(value, key, tensors)
        if tensors:
            save_file(tensors, str(tmp / f"{key}.safetensors"))
            files[f"{key}.safetensors"] = sha256_file(tmp / f"{key}.safetensors")
    (tmp / "state.json").write_text(json.dumps({"tree": tree, "files": files}, indent=1))
    old = folder.with_name(folder.name + ".prev")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def unpack_checkpoint(folder) -> Optional[Dict[str, Any]]:
    """The state ``pack_checkpoint`` wrote (None if there is none), each file checked against its
    sha256; Adam's dropped first moments come back as zeros."""
    folder = Path(folder)
    if not (folder / "state.json").exists():
        return None
    meta = json.loads((folder / "state.json").read_text())
    tensors: Dict[str, torch.Tensor] = {}
    for name, digest in meta["files"].items():
        if sha256_file(folder / name) != digest:
            raise RuntimeError(f"{folder / name}: sha256 mismatch (damaged or partly checked out)")
        tensors.update(load_file(str(folder / name)))
    state = {k: _unflatten(v, tensors) for k, v in meta["tree"].items()}
    for value in state.values():
        if isinstance(value, dict) and "param_groups" in value:
            value["state"] = {int(i): st for i, st in value["state"].items()}
            for st in value["state"].values():
                if "exp_avg_sq" in st and "exp_avg" not in st:
                    st["exp_avg"] = torch.zeros_like(st["exp_avg_sq"])
    return state


def append_log(path, record: Dict[str, Any]) -> None:
    """Append one JSON line to a training log."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_log(path):
    """All records of a JSON-lines log (a partially written last line is skipped)."""
    out = []
    path = Path(path)
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def stop_on_signals() -> None:
    """Make SIGTERM (and SIGINT, which a shell ignores in background jobs) raise KeyboardInterrupt,
    so that a training loop's ``finally`` writes its checkpoint before the process ends."""
    import signal

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, _raise)
        except (ValueError, OSError):  # not the main thread
            pass
