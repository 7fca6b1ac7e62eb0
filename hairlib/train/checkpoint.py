"""Atomic, resumable training checkpoints.

A checkpoint is written to ``<path>.part`` and renamed into place with ``os.replace``, so an
interrupted run never leaves a truncated file; the previous checkpoint is kept as
``<path>.prev`` until the new one is in place. Loading uses ``weights_only=True``: a
checkpoint holds tensors, numbers, strings and dicts/lists of them, never code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from hairlib.atomic import atomic_path

__all__ = ["save_atomic", "load_checkpoint", "append_log", "read_log", "stop_on_signals"]


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
