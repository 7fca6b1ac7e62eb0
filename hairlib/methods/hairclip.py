"""HairCLIP inference: edit hair by hairstyle and/or colour, each from a text or a reference.

    r = hairlib.edit(world, w, hairstyle="afro hairstyle", color="purple hair", method="hairclip")
    r = hairlib.edit(world, w, color=reference_image, method="hairclip")

A condition is a CLIP embedding, as the authors compute it (``hairlib.nets.hair_mapper``):
* text -> ``clip.embed_text_raw`` of the text as written (the authors' prompts are
  "<hairstyle> hairstyle" and "<colour> hair");
* reference -> the image's hair region only (the world's hair mask times the image), then
  ``clip.embed_image_raw``. A reference may be a path or an array (aligned by the world, as a
  photo), an image tensor in [-1, 1] at the generator's resolution, or W+ latents (generated).
Either condition may be absent: that part of the mapper then runs without modulation.

How a reference becomes a condition (``reference=``, default the settings' ``hairclip_reference``):
* ``"image"``, the paper's: the reference's raw CLIP image embedding, of its hair region only (the
  world's hair mask times the image) for a mapper trained so (``HairCLIPConfig.mask_reference``,
  the paper's and the authors' checkpoint's), else of the whole image. It relies on CLIP's image
  and text spaces being one space, as OpenAI's ViT-B/32 nearly makes them. The mini CLIP never saw
  hair-only images: it tells hair-masked renders' hairstyle apart 45 % of the time (nearest class
  mean, 8 renders per style) and whole renders' 95 %, so the shipped mini mapper reads whole ones.
* ``"text"``: CLIP reads the whole reference zero-shot against the mapper's vocabulary
  ("<style> hairstyle" / "<colour> hair") and the condition is the softmax-weighted mix
  (CLIP's logit scale, 100) of those prompts' raw text embeddings. It needs no training on
  reference images; the README's results compare the two on held-out references.

Training (``train_hairclip``) follows the authors' ``mapper/training/coach.py`` and
``mapper/datasets/latents_dataset.py``: each step edits the hairstyle only (p 0.5), the colour
only (0.2), both (0.27) or nothing (0.03); each condition is a text (p 0.5; "<style> hairstyle",
"<colour> hair") or a reference image. Losses, weights as the paper's defaults:

* text manipulation, 2.0 x CLIP loss of the edited image against each text condition;
* image manipulation: hairstyle, 5.0 x (1 - cos) of CLIP features of the hair-masked edit and
  the hair-masked reference (the authors apply it to out-of-domain references, i.e. photos: here
  renders); colour, 0.02 x L1 of the average LAB hair colours of the edit and the reference;
* attribute preservation: identity 0.3, colour kept when only the hairstyle changes 0.02
  (average LAB of the edit vs the source), background 1.0 (MSE where neither image has hair),
  latent L2 0.8.

Options that are not the paper's (off by default): ``color_weights``, the relative odds of
each target colour; ``mask_reference=False`` (above); and CLIP's zero-shot *reading* of the edit over the
vocabulary's prompts (``reading_loss``: cross-entropy at logit scale 100), against CLIP's reading
of the reference for reference conditions (``image_reading_lambda``) and against the condition's
own prompt for text ones (``text_reading_lambda``). The text loss only pulls the edit toward its
prompt; the reading also pushes it away from the vocabulary's other prompts, and it gives
reference conditions a loss CLIP can read when its hair-only embeddings say little.

Ranger at lr 0.0005, batch 1, 500 000 steps for FFHQ. The mini world's settings
(``hairlib.methods.settings.MINI``) train 4 faces a step for 12 000 steps; its references
are fresh renders of the target style or colour, with the renderer's exact hair masks.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from hairlib.methods.losses import avg_lab_loss, background_loss, image_embedding_loss
from hairlib.methods.losses import augment_views
from hairlib.methods.result import EditResult, method_settings
from hairlib.nets.clip import clip_loss
from hairlib.nets.hair_mapper import HairMapper, load_hair_mapper_state
from hairlib.nets.loading import load_state_dict_strict, read_checkpoint, read_with_meta, save_with_meta
from hairlib.prompts import HAIRCLIP_COLORS, HAIRCLIP_HAIRSTYLES
from hairlib.train.optim import Ranger
from hairlib.train.simple import fit

__all__ = ["condition_embedding", "reference_image", "read_reference", "hairclip_edit", "HairCLIPConfig", "train_hairclip",
           "reading_loss", "save_hair_mapper", "load_hair_mapper", "hairclip_vocab", "generated_references"]

Condition = Union[None, str, Path, np.ndarray, torch.Tensor, Any]


def reference_image(world, ref) -> torch.Tensor:
    """A reference (path, PIL/array photo, image tensor, or W+ latents) -> images [N, 3, R, R]."""
    if isinstance(ref, torch.Tensor):
        if ref.ndim == 3 and ref.shape[1:] == (world.generator.num_ws, world.generator.style_dim):
            with torch.no_grad():
                return world.generate(ref.to(world.device))
        if ref.ndim == 4 and ref.shape[1] == 3:
            return world.align(ref)
        raise ValueError(f"a reference tensor must be W+ latents or images [N, 3, H, W], got {tuple(ref.shape)}")
    return world.align(ref)  # paths, PIL images, uint8 arrays (ffhq: FFHQ-aligned)


REFERENCE_MODES = ("image", "text")


def condition_embedding(world, cond: Condition, kind: str = "hairstyle", reference: str = "image",
                        mask: bool = True) -> Optional[torch.Tensor]:
    """None, a text, or a reference -> the mapper's condition [N or 1, E] (or None).
    ``kind``: "hairstyle" or "color" (which vocabulary a ``reference="text"`` reading uses).
    ``mask``: ``reference="image"`` embeds the hair region only (the paper's); False: the whole
    reference (a mapper trained with ``HairCLIPConfig(mask_reference=False)``)."""
    if cond is None:
        return None
    if isinstance(cond, str) and not Path(cond).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        if not cond.strip():
            raise ValueError("an empty text is not a condition; pass None to leave that part unchanged")
        return world.clip.embed_text_raw(cond.strip())
    if reference not in REFERENCE_MODES:
        raise ValueError(f"reference must be one of {REFERENCE_MODES}, not {reference!r}")
    if kind not in ("hairstyle", "color"):
        raise ValueError(f"kind must be 'hairstyle' or 'color', not {kind!r}")
    images = reference_image(world, cond)
    if reference == "text":
        return read_reference(world, images, kind)
    with torch.no_grad():
        if not mask:
            return world.clip.embed_image_raw(images)
        if world.masks is None:
            raise ValueError(f"the {world.name} world has no face parser: reference images need hair masks")
        hair = world.masks(images)["hair"]
        return world.clip.embed_image_raw(images * hair)


def read_reference(world, images: torch.Tensor, kind: str, logit_scale: float = 100.0) -> torch.Tensor:
    """``reference="text"``: CLIP's zero-shot reading of reference images [N, 3, R, R] as the
    softmax-weighted mix of the vocabulary prompts' raw text embeddings -> [N, E]."""
    styles, colors = hairclip_vocab(world)
    texts = [style_text(n) for n in styles] if kind == "hairstyle" else [color_text(n) for n in colors]
    with torch.no_grad():
        weights = torch.softmax(logit_scale * world.clip.encode_image(images) @ world.clip.encode_text(texts).T, 1)
    return weights @ world.clip.embed_text_raw(texts)


def hairclip_edit(world, latents: torch.Tensor, *, hairstyle: Condition = None, color: Condition = None,
                  mapper: Optional[HairMapper] = None, strength: Optional[float] = None,
                  reference: Optional[str] = None, settings=None) -> EditResult:
    """Edit W+ latents with a HairCLIP mapper (the given one, or the world's ``hairclip_mapper``).
    ``strength``: w_hat = w + strength * M(w); None: the strength the mapper was trained at (its
    file's metadata; 0.1, the paper's, for the authors' checkpoint).
    ``reference``: how reference images become conditions, "image" or "text" (module docstring);
    None: the settings' ``hairclip_reference`` (the world's, or "paper": "image")."""
    if hairstyle is None and color is None:
        raise ValueError("give a hairstyle, a colour, or both (text or reference image)")
    t0 = time.time()
    if mapper is None:
        mapper = getattr(world, "hairclip_mapper", None)
        if mapper is None:
            raise ValueError(f"the {world.name} world has no trained HairCLIP mapper yet; train one with "
                             f"`hairlib train hairclip --world {world.name}`, or give a mapper file (`--mapper PATH` on the "
                             f"command line, mapper=PATH in Python)")
    if not isinstance(mapper, HairMapper):
        mapper = load_hair_mapper(mapper, world.device, num_ws=world.generator.num_ws)
    if (mapper.num_ws, mapper.dim) != (world.generator.num_ws, world.generator.style_dim):
        raise ValueError(f"this HairCLIP mapper edits W+ [{mapper.num_ws}, {mapper.dim}]; the {world.name} world's "
                         f"generator has [{world.generator.num_ws}, {world.generator.style_dim}]")
    mapper = mapper.to(world.device).eval()
    if strength is None:
        strength = mapper.strength
    if reference is None:
        reference = method_settings(world, settings, "hairclip_reference", "image")
    mask = getattr(mapper, "mask_reference", True)  # as the mapper was trained to read references
    e_style = condition_embedding(world, hairstyle, "hairstyle", reference, mask)
    e_color = condition_embedding(world, color, "color", reference, mask)
    with torch.no_grad():
        w = latents.to(world.device)
        src = world.generate(w)
        w_hat = mapper.edit(w, e_style, e_color, strength)
        images = world.generate(w_hat).clamp(-1, 1)
    describe = lambda c: c if isinstance(c, str) or c is None else "reference"  # noqa: E731
    return EditResult(latents=w_hat, images=images, source_images=src.clamp(-1, 1), method="hairclip",
                      text={"hairstyle": describe(hairstyle), "color": describe(color)}, seconds=time.time() - t0,
                      info={"strength": strength, "reference": reference})


# ---------------------------------------------------------------------------------------------
# vocabulary and references

def hairclip_vocab(world) -> Tuple[List[str], List[str]]:
    """(hairstyle names, colour names) the mapper is trained on: the papers' 44 + 12 for ffhq;
    the mini world's styles (bald left out: it has no hair to colour or mask) and colours."""
    if world.name == "mini":
        return [s for s in world.vocab["hairstyles"] if s != "bald"], list(world.vocab["hair_colors"])
    return list(HAIRCLIP_HAIRSTYLES), list(HAIRCLIP_COLORS)


def style_text(style: str) -> str:
    return f"{style} hairstyle"


def color_text(color: str) -> str:
    return f"{color} hair"


def generated_references(world, latents: Optional[torch.Tensor] = None, truncation: float = 0.7) -> Callable:
    """HairCLIP's reference images where a world has no renderer: other faces, as the authors take
    other CelebA-HQ faces (the condition is that face's hair, whatever its hairstyle or colour
    is called). -> ``references(kind, values, rng)`` giving (images [N, 3, R, R] in [-1, 1], hair
    masks [N, 1, R, R]) of N = len(values) faces: generated from random rows of ``latents`` (W+)
    when given, else from sampled z."""
    if world.masks is None:
        raise ValueError(f"the {world.name} world has no face parser: reference images need hair masks")

    def references(kind: str, values: Sequence[str], rng: np.random.Generator):
        n = len(values)
        with torch.no_grad():
            if latents is not None:
                w = latents[torch.as_tensor(rng.integers(latents.shape[0], size=n))].to(world.device)
            else:
                z = torch.randn(n, world.generator.style_dim, generator=torch.Generator().manual_seed(int(rng.integers(2**31))))
                w = world.generator.to_wplus(z.to(world.device), "z", truncation=truncation)
            images = world.generate(w).clamp(-1, 1)
            return images, world.masks(images)["hair"]
    return references


# ---------------------------------------------------------------------------------------------
# training

@dataclass(frozen=True)
class HairCLIPConfig:
    steps: int = 500_000  # the authors' max_steps
    batch: int = 1
    lr: float = 0.0005  # Ranger
    text_lambda: float = 2.0
    image_hairstyle_lambda: float = 5.0
    image_color_lambda: float = 0.02
    id_lambda: float = 0.3
    maintain_color_lambda: float = 0.02
    background_lambda: float = 1.0
    l2_lambda: float = 0.8
    color_weights: Optional[Dict[str, float]] = None  # relative odds of each target colour (None: uniform)
    p_hairstyle: float = 0.5  # edit the hairstyle only
    p_color: float = 0.2  # the colour only
    p_both: float = 0.27  # both (the rest, 0.03: no edit)
    p_hairstyle_text: float = 0.5  # a text condition (else a reference image)
    p_color_text: float = 0.5
    # True, the paper's: a reference's condition is the CLIP image embedding of its hair region only.
    # False (not the paper's): of the whole reference, for a CLIP that never saw hair-only images
    # (the mini CLIP reads hair-masked renders' hairstyle 45 % of the time, whole renders' 95 %)
    mask_reference: bool = True
    # not the paper's: for a reference image, x cross-entropy of CLIP's zero-shot reading of the edit
    # against its reading of the reference (softmax at logit scale 100 over the vocabulary's prompts,
    # "<style> hairstyle" / "<colour> hair", whole images): the reference's hairstyle or colour as CLIP
    # reads it, for a CLIP whose hair-only embeddings say little (the image losses above compare those)
    image_reading_lambda: float = 0.0
    # the same for a text condition, against its own prompt among the vocabulary's (not the paper's:
    # the text loss above pulls toward the prompt, this one also away from the vocabulary's others)
    text_reading_lambda: float = 0.0
    strength: float = 0.1  # w_hat = w + strength * M(w, e_style, e_color)
    truncation: float = 0.7  # of sampled latents
    augment: int = 0  # > 0: text losses averaged over this many shifted / flipped views (not the paper's)
    clip_input: str = "raw"  # the text loss's CLIP input: "raw" [-1, 1] (the authors'), "normalized"
    seed: int = 0
    ckpt_every: int = 250
    log_every: int = 25

    def __post_init__(self):
        if self.p_hairstyle + self.p_color + self.p_both > 1 + 1e-9:
            raise ValueError("p_hairstyle + p_color + p_both must be at most 1")
        odds = self.color_weights
        if odds is not None and (any(v < 0 for v in odds.values()) or not sum(odds.values()) > 0):
            raise ValueError(f"color_weights must be non-negative with a positive sum, got {odds}")


def _odds(weights: Optional[Dict[str, float]], names: List[str], what: str, plural: str) -> Optional[np.ndarray]:
    """The probabilities of drawing each of ``names`` from relative ``weights`` (1 for a name not
    given; None: uniform)."""
    if weights is None:
        return None
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"{what} names {plural} outside the vocabulary {names}: {unknown}")
    p = np.array([weights.get(n, 1.0) for n in names], dtype=float)
    return p / p.sum()


def _edit_kind(cfg: HairCLIPConfig, rng: np.random.Generator) -> Tuple[bool, bool]:
    """(edit the hairstyle?, edit the colour?) drawn with the authors' probabilities."""
    k = rng.choice(4, p=[cfg.p_hairstyle, cfg.p_color, cfg.p_both, max(0.0, 1 - cfg.p_hairstyle - cfg.p_color - cfg.p_both)])
    return k in (0, 2), k in (1, 2)


def reading_loss(clip, vocab: torch.Tensor, target: torch.Tensor, edit: torch.Tensor,
                 logit_scale: float = 100.0) -> torch.Tensor:
    """``image_reading_lambda`` / ``text_reading_lambda``'s term: the cross-entropy of CLIP's
    zero-shot reading of ``edit`` [N, 3, R, R] (softmax over the unit text embeddings ``vocab``
    [K, D]) against ``target``: reference images [N, 3, R, R] (CLIP's reading of them, no
    gradient) or indices [N] into ``vocab`` (the text conditions' own prompts). Differentiable in
    ``edit``; a scalar."""
    if target.ndim == 1:
        return torch.nn.functional.cross_entropy(logit_scale * clip.encode_image(edit) @ vocab.T, target.to(edit.device))
    with torch.no_grad():
        target = torch.softmax(logit_scale * clip.encode_image(target) @ vocab.T, 1)
    return -(target * torch.log_softmax(logit_scale * clip.encode_image(edit) @ vocab.T, 1)).sum(1).mean()


def train_hairclip(world, cfg: HairCLIPConfig = HairCLIPConfig(), out_dir=None, *,
                   latents: Optional[torch.Tensor] = None,
                   references: Optional[Callable[[str, Sequence[str], np.random.Generator], Tuple[torch.Tensor, torch.Tensor]]] = None,
                   progress: bool = True, parallel=None, init=None, **overrides) -> HairMapper:
    """Train (or resume, from ``out_dir/state.pt``) a HairCLIP mapper for ``world``.
    ``parallel``: a ``hairlib.train.parallel.Parallel`` (several processes: each its own batches).
    ``init``: a mapper (or its file) to start from, e.g. to fine-tune the shipped one.

    ``latents``: W+ [M, num_ws, D] to draw faces from (the authors: e4e inversions of CelebA-HQ),
    else faces are sampled. ``references(kind, values, rng) -> (images, hair masks)`` gives
    reference images: the world's (``World.references``; the mini world renders faces with the
    given hairstyles / colours), else, as the authors, other faces (``generated_references``)."""
    cfg = replace(cfg, **overrides) if overrides else cfg
    if world.masks is None:
        raise ValueError(f"the {world.name} world has no face parser: HairCLIP's losses need hair masks")
    if references is None:
        references = getattr(world, "references", None) or generated_references(world, latents, cfg.truncation)
    G, clip = world.generator, world.clip
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / "hairclip" / world.name
    torch.manual_seed(cfg.seed)
    emb_dim = clip.embed_text_raw("hair").shape[-1]
    mapper = HairMapper(G.num_ws, G.style_dim, emb_dim).to(world.device)
    if init is not None:
        start = init if isinstance(init, HairMapper) else load_hair_mapper(init, num_ws=G.num_ws)
        if (start.num_ws, start.dim, start.embed_dim) != (mapper.num_ws, mapper.dim, mapper.embed_dim):
            raise ValueError(f"init mapper is [{start.num_ws}, {start.dim}] with {start.embed_dim}-d conditions; this "
                             f"world needs [{mapper.num_ws}, {mapper.dim}] with {mapper.embed_dim}-d")
        mapper.load_state_dict({k: v.float() for k, v in start.state_dict().items()})
    opt = Ranger(mapper.parameters(), lr=cfg.lr)
    styles, colors = hairclip_vocab(world)
    color_p = _odds(cfg.color_weights, colors, "color_weights", "colours")
    if latents is not None:
        latents = latents.detach()
        if latents.ndim != 3 or latents.shape[1:] != (G.num_ws, G.style_dim):
            raise ValueError(f"latents must be W+ [M, {G.num_ws}, {G.style_dim}], got {tuple(latents.shape)}")
    rank = parallel.rank if parallel is not None else 0
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * rank)
    parts: Dict[str, float] = {}
    dev = world.device
    vocab_emb = {"hairstyle": clip.encode_text([style_text(n) for n in styles]),
                 "color": clip.encode_text([color_text(n) for n in colors])} if cfg.image_reading_lambda or cfg.text_reading_lambda else {}

    def condition(kind: str, names: List[str], p_text: float, rng) -> Dict[str, Any]:
        if rng.random() < p_text:
            texts = [style_text(n) if kind == "hairstyle" else color_text(n) for n in names]
            index = torch.tensor([(styles if kind == "hairstyle" else colors).index(n) for n in names])
            return {"text": texts, "embedding": clip.embed_text_raw(texts), "target": clip.encode_text(texts), "index": index}
        images, hair = references(kind, names, rng)
        images, hair = images.to(dev), hair.to(dev)
        with torch.no_grad():
            emb = clip.embed_image_raw(images * hair if cfg.mask_reference else images)
        return {"image": images, "hair": hair, "embedding": emb}

    def loss_fn(step: int) -> torch.Tensor:
        rng = np.random.default_rng([cfg.seed, step] + ([rank] if rank else []))
        do_style, do_color = _edit_kind(cfg, rng)
        with torch.no_grad():
            if latents is None:
                z = torch.randn(cfg.batch, G.style_dim, generator=gen).to(dev)
                w = G.to_wplus(z, "z", truncation=cfg.truncation)
            else:
                w = latents[torch.randint(0, latents.shape[0], (cfg.batch,), generator=gen)].to(dev)
            x = world.generate(w, fast=True)
            hair_x = world.masks(x)["hair"]
            id_x = world.identity(x)
        style = None
        if do_style:  # drawn only then (the shipped recipes' random stream)
            style = condition("hairstyle", [styles[i] for i in rng.integers(len(styles), size=cfg.batch)],
                              cfg.p_hairstyle_text, rng)
        drawn = rng.integers(len(colors), size=cfg.batch) if color_p is None else rng.choice(len(colors), cfg.batch, p=color_p)
        color = condition("color", [colors[i] for i in drawn],
                          cfg.p_color_text, rng) if do_color else None
        w_hat = mapper.edit(w, style and style["embedding"], color and color["embedding"], cfg.strength)
        x_hat = world.generate(w_hat, fast=True)
        with torch.no_grad():
            hair_hat = world.masks(x_hat)["hair"]
        terms = {}
        if cfg.augment > 0:  # views drawn from (seed, step, rank): a resumed run draws the same
            view_gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
            views = augment_views(x_hat, cfg.augment, view_gen)
        else:
            views = x_hat
        for name, c in (("hairstyle", style), ("color", color)):
            if c is not None and "text" in c:
                target = c["target"].repeat(max(1, cfg.augment), 1)
                terms[f"text_{name}"] = (cfg.text_lambda, clip_loss(clip, views, target, cfg.clip_input).mean())
        if style is not None and "image" in style:
            l_img = image_embedding_loss(clip, x_hat * hair_hat, style["image"] * style["hair"])
            terms["img_hairstyle"] = (cfg.image_hairstyle_lambda, l_img)
        if color is not None and "image" in color:
            terms["img_color"] = (cfg.image_color_lambda, avg_lab_loss(color["image"], color["hair"], x_hat, hair_hat))
        for name, c in (("hairstyle", style), ("color", color)):
            if cfg.image_reading_lambda and c is not None and "image" in c:
                terms[f"read_{name}"] = (cfg.image_reading_lambda, reading_loss(clip, vocab_emb[name], c["image"], x_hat))
            if cfg.text_reading_lambda and c is not None and "text" in c:
                terms[f"read_text_{name}"] = (cfg.text_reading_lambda, reading_loss(clip, vocab_emb[name], c["index"], x_hat))
        if do_style and not do_color:
            terms["maintain_color"] = (cfg.maintain_color_lambda, avg_lab_loss(x, hair_x, x_hat, hair_hat))
        terms["id"] = (cfg.id_lambda, (1 - (world.identity(x_hat) * id_x).sum(1)).mean())
        terms["background"] = (cfg.background_lambda, background_loss(x, x_hat, hair_x, hair_hat))
        terms["l2"] = (cfg.l2_lambda, torch.nn.functional.mse_loss(w_hat, w))
        parts.clear()
        parts.update({k: v.item() for k, (_, v) in terms.items()})
        return sum(lam * v for lam, v in terms.values() if lam)

    meta = {"world": world.name, "hairclip": asdict(cfg), "hairstyles": styles, "colors": colors}
    fit(mapper, opt, steps=cfg.steps, lr=cfg.lr, loss_fn=loss_fn, out_dir=out_dir, ckpt_every=cfg.ckpt_every,
        log_every=cfg.log_every, gen=gen, meta=meta, desc="train HairCLIP", progress=progress,
        schedule="constant", log_fn=lambda: dict(parts), parallel=parallel)
    mapper.strength, mapper.mask_reference = cfg.strength, cfg.mask_reference
    mapper.vocab = {"hairstyles": styles, "colors": colors}
    return mapper.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# save / load

def save_hair_mapper(mapper: HairMapper, path, extra: Optional[dict] = None) -> Path:
    """Atomic safetensors file with the W+ shape, embedding size and vocabulary in its metadata."""
    meta = {"num_ws": mapper.num_ws, "dim": mapper.dim, "embed_dim": mapper.embed_dim,
            "strength": mapper.strength, "mask_reference": getattr(mapper, "mask_reference", True),
            "vocab": getattr(mapper, "vocab", {}), **(extra or {})}
    return save_with_meta(mapper, path, meta)


def load_hair_mapper(path, device="cpu", num_ws: Optional[int] = None) -> HairMapper:
    """A HairCLIP mapper from our safetensors file or the authors' ``hairclip.pt`` (18 rows of 512,
    ViT-B/32 embeddings; the CLIP stored inside it is dropped)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no HairCLIP mapper at {path}")
    if path.suffix == ".safetensors":
        sd, meta = read_with_meta(path)
    else:
        sd, meta = load_hair_mapper_state(read_checkpoint(path, "hairclip.pt")[0]), {}
    key = "course_mapping.modulation_module_list.0.fc.weight"
    if key not in sd:
        raise ValueError(f"{path} holds no HairCLIP mapper weights (expected keys like {key})")
    dim = sd[key].shape[0]
    embed_dim = sd["course_mapping.modulation_module_list.0.gamma_function.0.weight"].shape[1]
    mapper = HairMapper(num_ws or meta.get("num_ws", 18), dim, embed_dim)
    load_state_dict_strict(mapper, sd, what=str(path))
    mapper.strength, mapper.vocab = float(meta.get("strength", mapper.strength)), meta.get("vocab", {})
    mapper.mask_reference = bool(meta.get("mask_reference", True))  # the authors' file: the paper's masked references
    return mapper.to(device).eval().requires_grad_(False)
