"""Atomic file writes: each file is written under a temporary name in its own folder and renamed
into place with ``os.replace`` (atomic on one file system), so a crash or an interrupt leaves
either the old file or the new one, never half of one; a failed write leaves no temporary file.

Training checkpoints (``hairlib.train.checkpoint.save_atomic``) build on ``atomic_path`` and also
fsync and keep the previous file; downloads verify their bytes first (``hairlib.weights``), and
every weights file is checked against its recorded sha256 (``sha256_file``).
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

__all__ = ["atomic_path", "write_text", "sha256_file"]

PathLike = Union[str, os.PathLike]


@contextmanager
def atomic_path(path: PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; when the block ends without an error
    it replaces ``path``, otherwise it is removed. ``keep_suffix``: the temporary name ends in
    ``path``'s own suffix (``x.part.png``), for writers that pick the format by it (PIL)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part" + (path.suffix if keep_suffix else ""))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """``Path(path).write_text(text)``, atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def sha256_file(path: PathLike) -> str:
    """Lowercase hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
