"""StyleCLIP global directions in StyleSpace (Patashnik et al. 2021, section 6).

Pre-processing, once per (generator, CLIP) pair and cached on disk:
1. statistics of StyleSpace S: per-channel mean and standard deviation of the affine outputs
   over ``n_stats`` mapped z (no synthesis needed, so this is seconds);
2. the relevance matrix R [channels, CLIP dim]: for each channel c of the conv layers (ToRGB
   excluded, resolution <= ``max_resolution``), on ``n_images`` images shift s_c by
   +-``shift`` standard deviations, embed both pictures with CLIP and keep the normalised mean
   of the embedding differences. All (channel, image) pairs are generated in large batches.

An edit: delta_t = normalised difference of the prompt-engineered embeddings of target and
neutral text; r_c = <R_c, delta_t>; channels with |r_c| < beta are zeroed; delta_s = r / max|r|;
s' = s + alpha * delta_s * sigma_s. The number of channels touched is reported.
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hairlib.atomic import atomic_path
from hairlib.methods.result import EditResult, method_settings
from hairlib.weights import cache_dir

__all__ = ["GlobalConfig", "GlobalDirections", "global_edit", "fingerprint"]


@dataclass(frozen=True)
class GlobalConfig:
    n_stats: int = 100_000  # mapped z for the StyleSpace mean/std (the paper's number)
    n_images: int = 100  # images per channel for the relevance matrix (the paper's number)
    shift: float = 5.0  # +- this many standard deviations
    max_resolution: int = 128  # channels of conv layers up to this resolution (the paper's choice)
    batch: int = 64  # (channel, image) pairs per generator call (two images each)
    truncation: float = 0.7  # of the images used for the relevance matrix
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GlobalEditConfig:
    """The edit's settings (the paper's: alpha 4.1, beta 0.15, neutral "a face", StyleCLIP's 79
    prompt templates for both texts)."""
    alpha: float = 4.1  # strength along the direction
    beta: float = 0.15  # disentanglement threshold on |relevance|
    neutral: str = "a face"  # the text the target is taken relative to
    templates: Optional[str] = "styleclip"  # CLIP.encode_text's templates ("styleclip": 79, "imagenet": 80)


def fingerprint(world) -> str:
    """Short hash of the generator's weights (every byte: a fine-tune may move only the end of a
    tensor) and CLIP's identity (its name, a text's embedding and an image's): the cache key of a
    pre-processing."""
    h = hashlib.sha256()
    for k, v in sorted(world.generator.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(repr(world.clip).encode())
    with torch.no_grad():  # both towers: the relevance reads the image side, the directions the text side
        emb = world.clip.encode_text("a face", cache=False)  # the weights as they are now
        ramp = torch.linspace(-1, 1, 64 * 64 * 3).reshape(1, 3, 64, 64)
        img = world.clip.encode_image(ramp)
    h.update(emb.float().cpu().numpy().round(4).tobytes())
    h.update(img.float().cpu().numpy().round(4).tobytes())
    return h.hexdigest()[:16]


class GlobalDirections:
    """Pre-computed StyleSpace statistics and CLIP relevance of every manipulated channel."""

    def __init__(self, layers: Sequence[int], channels: Sequence[int], mean: List[torch.Tensor],
                 std: List[torch.Tensor], relevance: torch.Tensor, meta: Optional[dict] = None):
        self.layers = list(layers)  # style-layer indices covered by ``relevance``
        self.channels = list(channels)  # their channel counts
        self.mean = mean  # per style layer (all layers): [C_l]
        self.std = std
        self.relevance = relevance  # [sum(channels), D], unit rows
        self.meta = dict(meta or {})

    # -- pre-processing ------------------------------------------------------------------------
    @classmethod
    @torch.no_grad()
    def compute(cls, world, cfg: GlobalConfig = GlobalConfig(), *, progress: bool = True) -> "GlobalDirections":
        G, clip = world.generator, world.clip
        dev = world.device
        t0 = time.time()
        gen = torch.Generator().manual_seed(cfg.seed)
        # 1. statistics of S
        sums, sqs = None, None
        for i in tqdm(range(0, cfg.n_stats, 4096), desc="global directions: style statistics", disable=not progress,
                      unit="batch", leave=False):
            z = torch.randn(min(4096, cfg.n_stats - i), G.style_dim, generator=gen).to(dev)
            s = G.styles(G.broadcast(G.mapping(z)))
            if sums is None:
                sums, sqs = [x.sum(0).double() for x in s], [x.double().pow(2).sum(0) for x in s]
            else:
                for j, x in enumerate(s):
                    sums[j] += x.sum(0).double()
                    sqs[j] += x.double().pow(2).sum(0)
        mean = [(a / cfg.n_stats).float() for a in sums]
        std = [((b / cfg.n_stats) - (a / cfg.n_stats) ** 2).clamp_min(0).sqrt().float() for a, b in zip(sums, sqs)]
        t_stats = time.time() - t0
        # 2. relevance
        layers = [sl.index for sl in G.style_layers if not sl.is_torgb and sl.resolution <= cfg.max_resolution]
        channels = [G.style_layers[i].channels for i in layers]
        z = torch.randn(cfg.n_images, G.style_dim, generator=gen).to(dev)
        base = G.styles(G.broadcast(G.mapping(z, truncation=cfg.truncation)))  # per layer [K, C_l]
        pairs = [(li, c, k) for li, l in enumerate(layers) for c in range(channels[li]) for k in range(cfg.n_images)]
        diff_sum = torch.zeros(sum(channels), clip.embed_dim, device=dev)
        offsets = [0]
        for c in channels:
            offsets.append(offsets[-1] + c)
        bar = tqdm(total=len(pairs), desc="global directions: relevance", disable=not progress, unit="pair")
        for i in range(0, len(pairs), cfg.batch):
            chunk = pairs[i:i + cfg.batch]
            b = len(chunk)
            li_t = torch.tensor([p[0] for p in chunk])
            c_t = torch.tensor([p[1] for p in chunk], device=dev)
            k_t = torch.tensor([p[2] for p in chunk], device=dev)
            styles = [x[k_t].repeat(2, 1) for x in base]  # [2B, C_l]: + shifts then - shifts
            for li in li_t.unique().tolist():
                rows = (li_t == li).nonzero().flatten().to(dev)
                l = layers[li]
                step = cfg.shift * std[l].to(dev)[c_t[rows]]
                styles[l][rows, c_t[rows]] += step
                styles[l][rows + b, c_t[rows]] -= step
            emb = clip.encode_image(G.synthesize_from_styles(styles, noise_mode="const"))
            d = emb[:b] - emb[b:]
            idx = torch.tensor([offsets[p[0]] + p[1] for p in chunk], device=dev)
            diff_sum.index_add_(0, idx, d)
            bar.update(b)
        bar.close()
        relevance = F.normalize(diff_sum / cfg.n_images, dim=1)
        meta = {"config": cfg.to_dict(), "seconds_stats": round(t_stats, 2),
                "seconds_relevance": round(time.time() - t0 - t_stats, 2), "device": str(dev)}
        return cls(layers, channels, [m.cpu() for m in mean], [s.cpu() for s in std], relevance.cpu(), meta)

    # -- disk cache ----------------------------------------------------------------------------
    def save(self, path) -> Path:
        import json

        from safetensors.torch import save_file

        path = Path(path)
        tensors = {"relevance": self.relevance.contiguous()}
        for i, (m, s) in enumerate(zip(self.mean, self.std)):
            tensors[f"mean.{i}"], tensors[f"std.{i}"] = m.contiguous(), s.contiguous()
        meta = {"layers": json.dumps(self.layers), "channels": json.dumps(self.channels), "meta": json.dumps(self.meta)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path) -> "GlobalDirections":
        import json

        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            n = sum(1 for k in f.keys() if k.startswith("mean."))
            mean = [f.get_tensor(f"mean.{i}") for i in range(n)]
            std = [f.get_tensor(f"std.{i}") for i in range(n)]
            rel = f.get_tensor("relevance")
        return cls(json.loads(meta["layers"]), json.loads(meta["channels"]), mean, std, rel, json.loads(meta["meta"]))

    @classmethod
    def for_world(cls, world, cfg: Optional[GlobalConfig] = None, *, smoke: bool = False, cache: bool = True,
                  progress: bool = True) -> "GlobalDirections":
        """Load the cached pre-processing of this world (generator + CLIP + config), or compute
        and cache it under ``$HAIRLIB_HOME/global_directions/``. ``smoke``: the world's settings
        cut to 2 images per channel and 2 048 latents for the statistics, only to check that code
        runs (the notebooks under ``HAIRLIB_SMOKE``; they share one cached result)."""
        cfg = cfg or method_settings(world, None, "global_preprocess", GlobalConfig())
        if smoke:
            cfg = replace(cfg, n_stats=2048, n_images=2)
        key = hashlib.sha256((fingerprint(world) + repr(sorted(cfg.to_dict().items()))).encode()).hexdigest()[:16]
        path = Path(cache_dir()) / "global_directions" / f"{world.name}-{key}.safetensors"
        if cache and path.exists():
            return cls.load(path)
        if progress:
            where = f"; cached in {path}, so later edits start at once" if cache else ""
            print(f"global directions: pre-processing the {world.name} world once (CLIP's response to every style "
                  f"channel over {cfg.n_images} images; minutes on a CPU){where}", file=sys.stderr, flush=True)
        gd = cls.compute(world, cfg, progress=progress)
        if cache:
            gd.save(path)
        return gd

    # -- editing -------------------------------------------------------------------------------
    def text_direction(self, clip, target: str, neutral: str, templates="styleclip") -> torch.Tensor:
        """delta_t [D]: normalised difference of the target's and the neutral text's embeddings."""
        e = clip.encode_text([target, neutral], templates=templates)
        return F.normalize(e[0] - e[1], dim=0)

    def direction(self, delta_t: torch.Tensor, beta: float) -> Tuple[List[torch.Tensor], int]:
        """StyleSpace direction (one [C_l] tensor per style layer, in units of sigma already applied)
        and the number of channels it touches."""
        r = self.relevance @ delta_t.float().cpu()  # [channels]
        r = torch.where(r.abs() < beta, torch.zeros_like(r), r)
        touched = int((r != 0).sum())
        if touched:
            r = r / r.abs().max()
        out = [torch.zeros_like(m) for m in self.mean]
        start = 0
        for l, c in zip(self.layers, self.channels):
            out[l] = r[start:start + c] * self.std[l]
            start += c
        return out, touched

    def top_channels(self, delta_t: torch.Tensor, k: int = 10) -> List[Tuple[int, int, float]]:
        """The k most relevant (style layer, channel, relevance) for a text direction."""
        r = self.relevance @ delta_t.float().cpu()
        where = [(l, c) for l, n in zip(self.layers, self.channels) for c in range(n)]
        top = r.abs().topk(min(k, len(where))).indices.tolist()
        return [(where[i][0], where[i][1], float(r[i])) for i in top]


def global_edit(world, latents: torch.Tensor, text: str, *, neutral: Optional[str] = None,
                alpha: Union[None, float, Sequence[float]] = None, beta: Optional[float] = None,
                directions: Optional[GlobalDirections] = None, templates: Union[str, None] = "settings",
                settings=None, progress: bool = True) -> EditResult:
    """Edit W+ latents with a global direction. ``neutral``, ``alpha``, ``beta`` and ``templates``
    default to ``settings``' ``global_edit`` (``hairlib.methods.settings.resolve``: the world's, or
    "paper"); several ``alpha`` values give a strength sweep (results stacked alpha-major).
    ``templates``: the prompt engineering of both texts (``CLIP.encode_text``; None: the texts as
    written). ``info`` reports the channels touched and the top channels."""
    ecfg = method_settings(world, settings, "global_edit", GlobalEditConfig())
    neutral = neutral or ecfg.neutral
    alpha = ecfg.alpha if alpha is None else alpha
    beta = ecfg.beta if beta is None else beta
    templates = ecfg.templates if templates == "settings" else templates
    t0 = time.time()
    pre = method_settings(world, settings, "global_preprocess", GlobalConfig())
    gd = directions or GlobalDirections.for_world(world, pre, progress=progress)
    delta_t = gd.text_direction(world.clip, text, neutral, templates=templates)
    ds, touched = gd.direction(delta_t, beta)
    G = world.generator
    alphas = [float(alpha)] if isinstance(alpha, (int, float)) else [float(a) for a in alpha]
    with torch.no_grad():
        w = latents.to(world.device)
        s = G.styles(w)
        src = G.synthesize_from_styles(s)
        t_edit = time.time()
        edited = [[x + a * d.to(x) for x, d in zip(s, ds)] for a in alphas]
        styles = [torch.cat([e[i] for e in edited]) for i in range(len(s))]
        images = G.synthesize_from_styles(styles).clamp(-1, 1)
    return EditResult(latents=styles, images=images, source_images=src.clamp(-1, 1), method="global", text=text,
                      seconds=time.time() - t0,
                      info={"channels_touched": touched, "alpha": alphas if len(alphas) > 1 else alphas[0],
                            "beta": beta, "neutral": neutral, "templates": templates, "top_channels": gd.top_channels(delta_t, 5),
                            "seconds_manipulation": time.time() - t_edit, "space": "s"})
