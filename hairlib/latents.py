"""A folder of face images -> a file of W+ latents: the ``train_faces.pt`` / ``test_faces.pt``
that StyleCLIP's and HairCLIP's mapper training read (a tensor [N, num_ws, style_dim], saved
with ``torch.save``; theirs are e4e inversions of CelebA-HQ at 1024 px).

    prepare_latents(world, "photos/", "train_faces.pt")

Each image is aligned (ffhq: dlib FFHQ alignment; mini: resized) and inverted (encoder, then
``world.invert_config.steps`` of optimisation unless ``steps`` says otherwise). Images with no
face, or unreadable, are skipped and listed. The run is resumable: after every batch the
latents so far are written atomically to ``OUT.partial.pt``; rerunning continues from there.
A sidecar ``OUT.json`` lists the source file of each row and the skipped files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import torch

from hairlib.atomic import atomic_path, write_text

__all__ = ["prepare_latents", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def prepare_latents(world, folder, out, *, batch: int = 8, steps: Optional[int] = None, limit: Optional[int] = None,
                    progress: bool = True) -> torch.Tensor:
    """Invert every image in ``folder`` (sorted by name) and save W+ [N, num_ws, style_dim] to ``out``."""
    folder, out = Path(folder), Path(out)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    files = files[:limit] if limit else files
    partial = out.with_name(out.name + ".partial.pt")
    done: List[str] = []
    skipped: List[str] = []
    rows: List[torch.Tensor] = []
    if partial.exists():
        state = torch.load(partial, map_location="cpu", weights_only=True)
        done, skipped, rows = list(state["names"]), list(state["skipped"]), [state["latents"]]
    todo = [f for f in files if f.name not in set(done) | set(skipped)]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(files), initial=len(files) - len(todo), desc="invert images", disable=not progress)
    for i in range(0, len(todo), batch):
        chunk, xs, names = todo[i:i + batch], [], []
        for f in chunk:
            try:
                xs.append(world.align(f))
                names.append(f.name)
            except ValueError:  # unreadable, or no face found
                skipped.append(f.name)
        if xs:
            w = world.invert(torch.cat(xs), steps=steps).detach().cpu()
            rows.append(w)
            done += names
        _save_atomic({"names": done, "skipped": skipped,
                      "latents": torch.cat(rows) if rows else torch.zeros(0)}, partial)
        bar.update(len(chunk))
    bar.close()
    if not done:
        raise ValueError(f"no face could be read in {folder} ({len(skipped)} files skipped)")
    latents = torch.cat(rows)
    _save_atomic(latents, out)
    write_text(out.with_suffix(".json"), json.dumps({"rows": done, "skipped": skipped, "world": world.name,
                                                    "shape": list(latents.shape)}, indent=1))
    partial.unlink()
    return latents
