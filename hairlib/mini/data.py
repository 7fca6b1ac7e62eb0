"""Render streams: step-indexed batches of fresh renders, optionally from worker processes.

Batch ``k`` of a stream is a pure function of (seed, k): a run resumed at step k sees exactly the
batches it would have seen, whatever the number of workers. With ``workers > 0`` a
``torch.utils.data.DataLoader`` renders ahead in that many processes (a GPU trains faster than
one core renders: ~600 renders/s).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from hairlib.mini import render as R
from hairlib.mini.prior import params_from_z

__all__ = ["RenderBatches", "PairedRenders", "stream", "render_references"]


class RenderBatches(torch.utils.data.Dataset):
    """Index k -> {"images": [B, 3, S, S] in [-1, 1], "labels": {name: int64 [B]}, and
    "captions": list[str] if ``caption_fn`` is given} for renders of ``split``."""

    def __init__(self, batch: int, seed: int, split: str = "train", size: int = 64,
                 caption_fn: Optional[Callable] = None):
        self.batch = batch  # renders per item
        self.seed = seed  # stream seed
        self.split = split  # "train" or "heldout"
        self.size = size  # render size in px
        self.caption_fn = caption_fn  # (params, rng) -> list[str], e.g. train_clip.captions_for

    def __len__(self) -> int:
        return 2 ** 31 - 1

    def __getitem__(self, step: int) -> Dict:
        rng = np.random.default_rng([self.seed, int(step)])
        params = R.sample_params(rng, n=self.batch, split=self.split)
        images, _, labels = R.render_batch(params, size=self.size)
        item = {"images": R.to_tensor(images), "labels": {k: torch.as_tensor(v) for k, v in labels.items()}}
        if self.caption_fn is not None:
            item["captions"] = self.caption_fn(params, rng)
        return item


class PairedRenders(torch.utils.data.Dataset):
    """Index k -> {"z": [B, z_dim] ~ N(0, I), "images": [B, 3, S, S] in [-1, 1], "features" (the
    faces' ``render.params_features``), "labels"}: each
    image is the render of the face that its z stands for (``hairlib.mini.prior.params_from_z``),
    so a generator can be taught G(z) = render(face(z)). Training split: z ~ N(0, I) gives faces
    with exactly ``render.sample_params(split="train")``'s law."""

    def __init__(self, batch: int, seed: int, z_dim: int = 128, size: int = 64):
        self.batch, self.seed, self.z_dim, self.size = batch, seed, z_dim, size

    def __len__(self) -> int:
        return 2 ** 31 - 1

    def __getitem__(self, step: int) -> Dict:
        gen = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(step))
        z = torch.randn(self.batch, self.z_dim, generator=gen)
        params = params_from_z(z)
        images, _, labels = R.render_batch(params, size=self.size)
        return {"z": z, "images": R.to_tensor(images), "features": torch.from_numpy(R.params_features(params)),
                "labels": {k: torch.as_tensor(v) for k, v in labels.items()}}


def stream(dataset: torch.utils.data.Dataset, start: int, workers: int = 0) -> Iterator[Dict]:
    """Items start, start + 1, ... in order (rendered ahead by ``workers`` processes if > 0)."""
    if workers <= 0:
        k = start
        while True:
            yield dataset[k]
            k += 1
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, sampler=range(start, len(dataset)),
                                         num_workers=workers, prefetch_factor=4, persistent_workers=False)
    yield from loader


def render_references(kind: str, values: Sequence[str], rng: np.random.Generator, split: str = "train"
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """HairCLIP's reference images in the mini world (``World.references``): one fresh render per value, with that hairstyle (``kind="hairstyle"``)
    or hair colour (``"color"``), and its exact hair mask. -> (images [N, 3, 64, 64] in [-1, 1],
    hair masks [N, 1, 64, 64])."""
    params = []
    for v in values:
        if kind == "hairstyle":
            params.append(R.sample_params(rng, split=split, hairstyle=v))
        elif kind == "color":
            p = R.sample_params(rng, split=split, hair_color=v)
            while R.HAIRSTYLES[p.hairstyle] == "bald":
                p = R.sample_params(rng, split=split, hair_color=v)
            params.append(p)
        else:
            raise ValueError(f"kind must be 'hairstyle' or 'color', not {kind!r}")
    images, masks, _ = R.render_batch(params)
    return R.to_tensor(images), torch.from_numpy(masks["hair"]).float()[:, None]
