"""StyleCLIP latent mapper: train one per prompt, save/load, edit (Patashnik et al. 2021, section 5).

Training follows the authors' ``mapper/training/coach.py``: for each batch of W+ latents w,
``w_hat = w + 0.1 * M(w)``; loss = 1.0 * CLIP(G(w_hat), text) + 0.8 * MSE(w_hat, w)
+ 0.1 * ID(G(w_hat), G(w)); Ranger at lr 0.5 (constant), batch 2, 50 000 steps; noise fixed;
the text embedded as written. Hair and expression mappers are trained without the fine
sub-mapper (``groups=("coarse", "medium")``). Latents come from a file of inverted faces
(the authors: e4e inversions of CelebA-HQ, ``train_faces.pt``; see notebook 01) or, when none
is given, are sampled from the generator (truncation 0.7).

Checkpoints: ours are safetensors (the mapper's weights + its text, groups and W+ shape in the
metadata). The authors' ``.pt`` files (``{"state_dict": {"mapper.*", "decoder.*"}, "opts"}``) load
too, with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from hairlib.methods.losses import view_clip_loss
from hairlib.methods.result import EditResult
from hairlib.nets.loading import load_state_dict_strict, read_with_meta, save_with_meta
from hairlib.nets.mappers import LevelsMapper
from hairlib.prompts import content_words
from hairlib.train.optim import Ranger
from hairlib.train.simple import fit

__all__ = ["MapperConfig", "train_mapper", "save_mapper", "load_mapper", "mapper_edit", "slug", "find_mapper",
           "mapper_prompts"]


@dataclass(frozen=True)
class MapperConfig:
    steps: int = 50_000  # the authors' number
    batch: int = 2
    lr: float = 0.5  # Ranger (equalised layers with lr_mul 0.01: 0.005 in effect)
    clip_lambda: float = 1.0
    l2_lambda: float = 0.8  # MSE(w_hat, w)
    id_lambda: float = 0.1
    groups: Sequence[str] = ("coarse", "medium", "fine")
    strength: float = 0.1  # w_hat = w + strength * M(w)
    truncation: float = 0.7  # of sampled latents
    augment: int = 0  # > 0: the CLIP loss averaged over this many shifted / flipped views (not the paper's)
    clip_input: str = "raw"  # "raw": the [-1, 1] image into CLIP (the authors'); "normalized": CLIP's mean/std
    # not the paper's: x cross-entropy of CLIP's zero-shot reading of the edit over the prompt and
    # these others (softmax at logit scale 100), toward the prompt: the CLIP loss pulls the edit toward
    # its prompt only, this also away from the contrasting ones (e.g. "... a neutral expression.")
    contrast: Sequence[str] = ()
    contrast_lambda: float = 0.0
    seed: int = 0
    ckpt_every: int = 500
    log_every: int = 25

    def to_dict(self) -> dict:
        d = asdict(self)
        d["groups"] = list(self.groups)
        d["contrast"] = list(self.contrast)
        return d


def slug(text: str) -> str:
    """File name of a prompt's mapper: "Curly red hair!" -> "curly-red-hair"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "prompt"


def train_mapper(world, text: str, cfg: MapperConfig = MapperConfig(), out_dir=None, *,
                 latents: Optional[torch.Tensor] = None, progress: bool = True, parallel=None, init=None,
                 **overrides) -> LevelsMapper:
    """Train (or resume, from ``out_dir/state.pt``) a mapper for ``text``; returns it in eval mode.
    ``latents``: W+ [M, num_ws, D] to draw batches from (else sampled from the world).
    ``parallel``: a ``hairlib.train.parallel.Parallel`` (several processes: each its own batches).
    ``init``: a mapper (or its file) to start from, e.g. to fine-tune a shipped one on another
    generator's faces; its groups and W+ shape must be ``cfg``'s."""
    cfg = replace(cfg, **overrides) if overrides else cfg
    if not text or not text.strip():
        raise ValueError("a mapper needs a non-empty text prompt")
    G = world.generator
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / "mappers" / f"{world.name}-{slug(text)}"
    torch.manual_seed(cfg.seed)
    mapper = LevelsMapper(G.num_ws, G.style_dim, cfg.groups).to(world.device)
    if init is not None:
        start = init if isinstance(init, LevelsMapper) else load_mapper(init, num_ws=G.num_ws)
        if (start.num_ws, start.dim, start.groups) != (mapper.num_ws, mapper.dim, mapper.groups):
            raise ValueError(f"init mapper is [{start.num_ws}, {start.dim}] with groups {list(start.groups)}; this "
                             f"training needs [{mapper.num_ws}, {mapper.dim}] with {list(mapper.groups)}")
        mapper.load_state_dict(start.state_dict())
    opt = Ranger(mapper.parameters(), lr=cfg.lr)
    txt = world.clip.encode_text(text.strip())
    if cfg.contrast_lambda and not cfg.contrast:
        raise ValueError("contrast_lambda needs contrast prompts (MapperConfig.contrast)")
    readings = world.clip.encode_text([text.strip(), *cfg.contrast]) if cfg.contrast_lambda else None
    rank = parallel.rank if parallel is not None else 0
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * rank)
    if latents is not None:
        latents = latents.detach()
        if latents.ndim != 3 or latents.shape[1:] != (G.num_ws, G.style_dim):
            raise ValueError(f"latents must be W+ [M, {G.num_ws}, {G.style_dim}], got {tuple(latents.shape)}")
    parts = {}

    def loss_fn(step: int) -> torch.Tensor:
        with torch.no_grad():
            if latents is None:
                z = torch.randn(cfg.batch, G.style_dim, generator=gen).to(world.device)
                w = G.to_wplus(z, "z", truncation=cfg.truncation)
            else:
                w = latents[torch.randint(0, latents.shape[0], (cfg.batch,), generator=gen)].to(world.device)
            x = world.generate(w, fast=True)
            src_id = world.identity(x) if cfg.id_lambda else None
        w_hat = w + cfg.strength * mapper(w)
        x_hat = world.generate(w_hat, fast=True)
        # augmented views drawn from (seed, step, rank): a resumed run draws the same
        view_gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 64 + rank) if cfg.augment else None
        l_clip = view_clip_loss(world.clip, x_hat, txt, cfg.augment, view_gen, cfg.clip_input).mean()
        l_l2 = F.mse_loss(w_hat, w)
        loss = cfg.clip_lambda * l_clip + cfg.l2_lambda * l_l2
        parts.update(clip=l_clip.item(), l2=l_l2.item())
        if readings is not None:
            logits = 100 * world.clip.encode_image(x_hat, cfg.clip_input) @ readings.T
            l_read = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
            loss = loss + cfg.contrast_lambda * l_read
            parts["contrast"] = l_read.item()
        if cfg.id_lambda:
            l_id = (1 - (world.identity(x_hat) * src_id).sum(1)).mean()
            loss = loss + cfg.id_lambda * l_id
            parts["id"] = l_id.item()
        return loss

    meta = {"text": text, "mapper": cfg.to_dict(), "world": world.name}
    fit(mapper, opt, steps=cfg.steps, lr=cfg.lr, loss_fn=loss_fn, out_dir=out_dir, ckpt_every=cfg.ckpt_every,
        log_every=cfg.log_every, gen=gen, meta=meta, desc=f"train mapper {text!r}", progress=progress,
        schedule="constant", log_fn=lambda: dict(parts), parallel=parallel)
    mapper.text, mapper.strength = text, cfg.strength
    return mapper.eval().requires_grad_(False)


def save_mapper(mapper: LevelsMapper, path, *, text: Optional[str] = None, extra: Optional[dict] = None) -> Path:
    """Atomic safetensors file with the prompt, groups and W+ shape in its metadata."""
    meta = {"text": text or getattr(mapper, "text", ""), "groups": list(mapper.groups), "num_ws": mapper.num_ws,
            "dim": mapper.dim, "strength": getattr(mapper, "strength", 0.1), **(extra or {})}
    return save_with_meta(mapper, path, meta)


def load_mapper(path, device="cpu", num_ws: Optional[int] = None) -> LevelsMapper:
    """A mapper from our safetensors file or the authors' ``.pt`` checkpoint (e.g.
    ``mapper/pretrained/afro.pt``). The authors' files are for the 1024 px FFHQ generator (18 rows)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no mapper at {path}")
    if path.suffix == ".safetensors":
        sd, meta = read_with_meta(path)
    else:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{path} is not a StyleCLIP mapper checkpoint ({e})") from None
        sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(sd, dict):
            raise ValueError(f"{path} holds no state dict")
        if any(k.startswith("mapper.") for k in sd):
            sd = {k[len("mapper."):]: v for k, v in sd.items() if k.startswith("mapper.")}
        opts = ckpt.get("opts", {}) if isinstance(ckpt, dict) else {}
        meta = {"text": opts.get("description", "") if isinstance(opts, dict) else "", "strength": 0.1}
    groups = LevelsMapper.groups_in(sd)
    if not groups:
        raise ValueError(f"{path} holds no StyleCLIP mapper weights (expected keys like course_mapping.mapping.1.weight)")
    dim = next(v for k, v in sd.items() if k.endswith(".weight")).shape[0]
    mapper = LevelsMapper(num_ws or meta.get("num_ws", 18), dim, groups)
    load_state_dict_strict(mapper, sd, what=str(path))
    mapper.text, mapper.strength = meta.get("text", ""), float(meta.get("strength", 0.1))
    return mapper.to(device).eval().requires_grad_(False)


def mapper_prompts(world) -> dict:
    """{name: the prompt it was trained on} of the world's shipped mappers (from the files' metadata)."""
    out = {}
    for name, p in (getattr(world, "mappers", None) or {}).items():
        prompt = None
        if str(p).endswith(".safetensors") and Path(p).exists():
            from safetensors import safe_open

            with safe_open(str(p), "pt") as f:
                prompt = json.loads((f.metadata() or {}).get("hairlib", "{}")).get("text")
        out[name] = prompt
    return out


def find_mapper(world, text: str) -> Optional[Path]:
    """The world's mapper file for ``text``: by name ("afro"), by slug, or by the prompt it was
    trained on in any phrasing with the same content words ("afro hairstyle", "a photo of a person
    with an afro."; ``prompts.content_words``), else None."""
    known = getattr(world, "mappers", None) or {}
    path = known.get(text) or known.get(slug(text))
    if path is not None:
        return Path(path)
    want = content_words(text)
    if not want:
        return None
    for name, prompt in mapper_prompts(world).items():
        if want == content_words(name) or (prompt is not None and want == content_words(prompt)):
            return Path(known[name])
    return None


def mapper_edit(world, latents: torch.Tensor, text: str, *, mapper: Union[None, str, Path, LevelsMapper] = None,
                strength: Optional[float] = None) -> EditResult:
    """Edit W+ latents with a trained mapper: the given one (module or path), or the world's
    mapper for ``text`` (``world.mappers``: prompt -> file)."""
    t0 = time.time()
    if mapper is None:
        path = find_mapper(world, text)
        if path is None:
            have = "; ".join(f"{n} ({p!r})" if p else n for n, p in sorted(mapper_prompts(world).items()))
            raise ValueError(f"no mapper for {text!r} in the {world.name} world (it has: {have or 'none'}); train "
                             f"one with `hairlib train mapper --world {world.name} --text \"{text}\"`, or give a "
                             f"mapper file (`--mapper PATH` on the command line, mapper=PATH in Python)")
        mapper = path
    if not isinstance(mapper, LevelsMapper):
        mapper = load_mapper(mapper, world.device, num_ws=world.generator.num_ws)
    if mapper.num_ws != world.generator.num_ws or mapper.dim != world.generator.style_dim:
        raise ValueError(f"this mapper edits W+ [{mapper.num_ws}, {mapper.dim}]; the {world.name} world's generator "
                         f"has [{world.generator.num_ws}, {world.generator.style_dim}]")
    mapper = mapper.to(world.device)
    k = getattr(mapper, "strength", 0.1) if strength is None else strength
    with torch.no_grad():
        w = latents.to(world.device)
        src = world.generate(w)
        t_map = time.time()
        w_hat = mapper.edit(w, k)
        images = world.generate(w_hat).clamp(-1, 1)
    return EditResult(latents=w_hat, images=images, source_images=src.clamp(-1, 1), method="mapper", text=text,
                      seconds=time.time() - t0, info={"groups": list(mapper.groups), "strength": k,
                                                      "seconds_inference": time.time() - t_map})
