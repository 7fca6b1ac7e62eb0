"""ManiCLIP (Wang et al. 2022): many attributes edited at once from one sentence, no optimisation.

    r = hairlib.edit(world, w, "she has red hair, glasses and a smile.", method="maniclip")

The editor (``hairlib.nets.maniclip.ManiCLIPEditor``, the authors' ``TransModel``) reads one w and
CLIP's embedding of the sentence (``encode_text`` as it comes, not unit-normalised) and returns an
offset for every W+ row. As in the authors' ``train.py`` / ``generate.py``, the offset is added to
the *untruncated* w from the mapping network and the generator then truncates the edited W+ toward
the mean latent (0.7): on a face drawn at truncation psi the edit is ``W+ + psi * offset``.

``maniclip_edit`` takes W+ latents as every method does. The editor's input is their mean row,
un-truncated (``truncation``: how the latents were drawn, ``World.sample``'s 0.7 by default; 1 for
inverted images); the offset is applied at the truncation the editor was trained with (its file's
metadata; 0.7 for the authors' checkpoint), times ``strength`` (1, the authors').

Training (``train_maniclip``) follows the authors' command
(``python train.py --epochs 30 --loss_id_weight 0.05 --loss_w_norm_weight 0.1 --loss_clip_weight
1.0 --loss_face_norm_weight 0.05 --loss_minmaxentropy_weight 0.2 --loss_face_bg_weight 1
--decouple --part_sample_num 3``): random z, batch 16, Adam lr 1e-4 betas (0.5, 0.999), constant
rate, dropout on, and per step

* **text** (``decouple``, the paper's decoupling training): group sampling, one of five attribute
  groups (hair / eye / fashion / others / mouth) drawn uniformly, up to ``part_sample_num`` of its
  attributes joined after "she has" / "he has" / "the person has" (``PartTextDataset``); without
  it, whole captions of faces (their ``TextDataset``);
* **CLIP**, 1.0 x ``1 - cos`` of the edited image (clamped to [-1, 1], resized bilinearly to
  CLIP's input without antialiasing, raw [-1, 1] pixels) and the sentence;
* **w-norm**, 0.1 x mean(offset ** 2);
* **identity**, 0.05 x (1 - cos) of the identity net's embeddings of the edit and the source;
* **face colour**, 0.05 x L1 of the average LAB colours of the face regions (``avg_lab_loss``);
* **entropy**, 0.2 x 1e-4 x the entropy of the min-max normalised |offset| of each sample (sum
  over its num_ws x D entries, + 1e-7), averaged over the batch: it favours offsets that touch
  few latent entries;
* **background**, 1.0 x MSE of source and edit where neither image has hair or face.

The masks (hair; face: skin, brows, eyes, glasses, ears, earrings, nose, mouth, lips) come from
``masks=``: on ffhq the authors' own, face-parsing.PyTorch's BiSeNet with their resizing
(``authors_masks``, what ``hairlib train maniclip --world ffhq`` uses); by default the world's
parser (``World.masks``: the mini world's).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from hairlib import weights
from hairlib.methods.losses import avg_lab_loss
from hairlib.methods.result import EditResult, method_settings
from hairlib.nets.bisenet import BiSeNetParser, load_bisenet
from hairlib.nets.clip import clip_loss
from hairlib.nets.loading import load_state_dict_strict, read_with_meta, save_with_meta
from hairlib.nets.maniclip import ManiCLIPConfig, ManiCLIPEditor, load_maniclip
from hairlib.prompts import MANICLIP_GROUPS
from hairlib.train.simple import fit

__all__ = ["ManiCLIPTrainConfig", "editor_config", "part_sentence", "sentence_source", "entropy_loss",
           "maniclip_losses", "train_maniclip", "maniclip_edit", "save_maniclip", "load_maniclip_editor",
           "editor_input", "authors_masks", "outside_hair_and_face", "PRONOUNS"]

PRONOUNS = ("she", "he", "the person")  # PartTextDataset's subjects, drawn uniformly


@dataclass(frozen=True)
class ManiCLIPTrainConfig:
    steps: int = 46_860  # --epochs 30 x 1562 batches (25 000 CelebA attribute rows / 16, drop_last)
    batch: int = 16
    lr: float = 1e-4  # Adam, constant (the step schedule at epochs 120 / 160 is never reached)
    beta1: float = 0.5
    beta2: float = 0.999
    clip_lambda: float = 1.0
    w_norm_lambda: float = 0.1
    id_lambda: float = 0.05
    face_color_lambda: float = 0.05
    entropy_lambda: float = 0.2
    entropy_scale: float = 1e-4  # the factor inside the authors' entropy term
    background_lambda: float = 1.0
    truncation: float = 0.7  # of the source and the edited W+ (the generator's, on both)
    decouple: bool = True  # group sampling (PartTextDataset); False: whole captions (TextDataset)
    part_sample_num: int = 3  # attributes of one group per sentence
    clip_input: str = "raw"  # CLIP loss input: "raw" [-1, 1] (the authors'), "normalized"
    heads: int = 8  # the editor's attention heads (train.py: TransModel(nhead=8, num_decoder_layers=6))
    layers: int = 6
    seed: int = 10  # the authors' --seed
    ckpt_every: int = 250
    log_every: int = 25

    def __post_init__(self):
        if not 0 < self.truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1], got {self.truncation}")
        if self.part_sample_num < 1:
            raise ValueError(f"part_sample_num must be at least 1, got {self.part_sample_num}")


def editor_config(world, heads: int = 8, layers: int = 6) -> ManiCLIPConfig:
    """The editor sized by the world: the generator's rows and width (= d_model = CLIP's width),
    a feed-forward 4 x d_model wide (2048 at 512, the authors')."""
    G = world.generator
    clip_dim = int(world.clip.embed_dim)
    if clip_dim != G.style_dim:
        raise ValueError(f"ManiCLIP needs CLIP's width ({clip_dim}) to equal the generator's style width "
                         f"({G.style_dim}): its residual text and latent maps share one width")
    return ManiCLIPConfig(num_ws=G.num_ws, style_dim=G.style_dim, d_model=G.style_dim, clip_dim=clip_dim,
                          heads=heads, layers=layers, ff=4 * G.style_dim)


# ---------------------------------------------------------------------------------------------
# sentences

def part_sentence(rng: np.random.Generator, k: int = 3) -> Tuple[str, Dict[str, str]]:
    """The authors' ``PartTextDataset`` sentence: one CelebA group drawn uniformly, up to ``k`` of
    its attributes in random order joined by ", " after a subject drawn from ``PRONOUNS``.
    Returns (sentence, {attribute: "yes"} plus "male": "yes"/"no" when the subject says it)."""
    group = MANICLIP_GROUPS[list(MANICLIP_GROUPS)[int(rng.integers(len(MANICLIP_GROUPS)))]]
    attrs = [group[i] for i in rng.permutation(len(group))[:k]]
    subject = PRONOUNS[int(rng.integers(3))]
    labels = {a: "yes" for a in attrs}
    if subject != "the person":
        labels["male"] = "yes" if subject == "he" else "no"
    return f"{subject} has " + ", ".join(attrs), labels


def sentence_source(world, cfg: ManiCLIPTrainConfig) -> Callable[[np.random.Generator], Tuple[str, dict]]:
    """``rng -> (sentence, labels)`` for training: the world's own (``World.sentences``, e.g. the
    mini world's group-sampled captions of its renderer's attributes), else the authors' CelebA
    groups (``part_sentence``)."""
    own = getattr(world, "sentences", None)
    if own is not None:
        return lambda rng: own(rng, cfg.part_sample_num, cfg.decouple)
    if not cfg.decouple:
        raise ValueError("training without group sampling reads whole captions of faces (the authors' "
                         "Multi-Modal-CelebA-HQ text); this world has none: train with decouple=True")
    return lambda rng: part_sentence(rng, cfg.part_sample_num)


# ---------------------------------------------------------------------------------------------
# losses

def entropy_loss(offset: torch.Tensor, scale: float = 1e-4) -> torch.Tensor:
    """The authors' min-max entropy: per sample, |offset| over all its entries min-max normalised
    to [0, 1] (+ 1e-7), ``-sum p log p``; the batch mean times ``scale``."""
    o = offset.reshape(offset.shape[0], -1).abs()
    lo, hi = o.min(1, keepdim=True)[0], o.max(1, keepdim=True)[0]
    p = (o - lo) / (hi - lo) + 1e-7
    return -(p * torch.log(p)).sum(1).mean() * scale


def _clip_view(clip, images: torch.Tensor) -> torch.Tensor:
    """The authors' ``torchvision`` resize to CLIP's input side (bilinear, no antialias)."""
    size = clip.image_size
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


def authors_masks(device="cpu") -> Callable[[torch.Tensor], Dict[str, torch.Tensor]]:
    """ManiCLIP's masks: face-parsing.PyTorch's BiSeNet (registry entry ``face-parser-bisenet``,
    fetched once) with the authors' resizing to 512 px and back (``authors_resize``: masks
    averaged over 2 x 2 blocks at 256 px)."""
    parser = BiSeNetParser(load_bisenet(weights.fetch("face-parser-bisenet"), device))
    return lambda images: parser.masks(images, authors_resize=True)


def outside_hair_and_face(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> torch.Tensor:
    """[N, 1, H, W] 1 where neither image's masks (``a``, ``b``: {"hair", "face"}) have any hair or
    face (``train.py``'s ``(hair + face) == 0`` in both, exact for their averaged masks too)."""
    return (((a["hair"] + a["face"]) == 0) & ((b["hair"] + b["face"]) == 0)).float()


def maniclip_losses(world, cfg: ManiCLIPTrainConfig, x: torch.Tensor, x_hat: torch.Tensor, offset: torch.Tensor,
                    text_emb: torch.Tensor, masks_x: Dict[str, torch.Tensor], id_x: torch.Tensor,
                    masks: Optional[Callable] = None) -> Dict[str, Tuple[float, torch.Tensor]]:
    """Name -> (weight, value) of each of the authors' terms for sources ``x`` and edits ``x_hat``
    (both clamped to [-1, 1]); ``masks_x``, ``id_x``: the sources' masks and identity embeddings;
    ``masks``: images -> {"hair", "face", ...} (default: the world's)."""
    with torch.no_grad():
        masks_hat = (masks or world.masks)(x_hat.detach())
    terms = {"clip": (cfg.clip_lambda, clip_loss(world.clip, _clip_view(world.clip, x_hat), text_emb, cfg.clip_input).mean()),
             "w_norm": (cfg.w_norm_lambda, offset.pow(2).mean()),
             "id": (cfg.id_lambda, (1 - (world.identity(x_hat) * id_x).sum(1)).mean()),
             "face_color": (cfg.face_color_lambda, avg_lab_loss(x_hat, masks_hat["face"], x, masks_x["face"])),
             "entropy": (cfg.entropy_lambda, entropy_loss(offset, cfg.entropy_scale))}
    keep = outside_hair_and_face(masks_x, masks_hat)
    terms["background"] = (cfg.background_lambda, ((x * keep - x_hat * keep) ** 2).mean())
    return terms


# ---------------------------------------------------------------------------------------------
# training

def train_maniclip(world, cfg: ManiCLIPTrainConfig = ManiCLIPTrainConfig(), out_dir=None, *, progress: bool = True,
                   parallel=None, masks: Optional[Callable] = None, **overrides) -> ManiCLIPEditor:
    """Train (or resume, from ``out_dir/state.pt``) a ManiCLIP editor for ``world``; each process
    of a ``parallel`` run draws its own faces and sentences. ``masks``: images -> {"hair", "face"}
    masks (default: the world's parser; ``authors_masks()`` for the authors' BiSeNet)."""
    cfg = replace(cfg, **overrides) if overrides else cfg
    masks = masks or world.masks
    if masks is None:
        raise ValueError(f"the {world.name} world has no face parser: ManiCLIP's background and face-colour "
                         f"losses need hair and face masks")
    G, clip, dev = world.generator, world.clip, world.device
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / "maniclip" / world.name
    torch.manual_seed(cfg.seed)
    editor = ManiCLIPEditor(editor_config(world, cfg.heads, cfg.layers)).to(dev)
    opt = torch.optim.Adam(editor.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    sentences = sentence_source(world, cfg)
    rank = parallel.rank if parallel is not None else 0
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * rank)
    avg = G.get_latent_avg()
    parts: Dict[str, float] = {}

    def loss_fn(step: int) -> torch.Tensor:
        rng = np.random.default_rng([cfg.seed, step] + ([rank] if rank else []))
        texts = [sentences(rng)[0] for _ in range(cfg.batch)]
        with torch.no_grad():
            w = G.style(torch.randn(cfg.batch, G.style_dim, generator=gen).to(dev))  # untruncated, as the authors'
            x = world.generate(G.truncate(G.broadcast(w), cfg.truncation, avg), fast=True).clamp(-1, 1)
            masks_x, id_x = masks(x), world.identity(x)
            emb = clip.embed_text_raw(texts)
        offset = editor(w, emb)
        x_hat = world.generate(G.truncate(G.broadcast(w) + offset, cfg.truncation, avg), fast=True).clamp(-1, 1)
        terms = maniclip_losses(world, cfg, x, x_hat, offset, emb, masks_x, id_x, masks)
        parts.clear()
        parts.update({k: v.item() for k, (_, v) in terms.items()})
        return sum(lam * v for lam, v in terms.values() if lam)

    meta = {"world": world.name, "maniclip": asdict(cfg), "editor": editor.config.to_dict()}
    fit(editor, opt, steps=cfg.steps, lr=cfg.lr, loss_fn=loss_fn, out_dir=out_dir, ckpt_every=cfg.ckpt_every,
        log_every=cfg.log_every, gen=gen, meta=meta, desc="train ManiCLIP", progress=progress,
        schedule="constant", log_fn=lambda: dict(parts), parallel=parallel)
    editor.truncation = cfg.truncation
    editor.train_config = asdict(cfg)
    return editor.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# inference

def editor_input(world, latents: torch.Tensor, truncation: float) -> torch.Tensor:
    """The editor's w [N, D] for W+ ``latents`` drawn at ``truncation``: their mean row, moved
    back from the mean latent by 1 / truncation (the untruncated w the authors feed)."""
    if not 0 < truncation <= 1:
        raise ValueError(f"truncation must be in (0, 1], got {truncation}")
    w = latents.mean(1)
    if truncation == 1:
        return w
    avg = world.generator.get_latent_avg().to(w)
    return avg + (w - avg) / truncation


def maniclip_edit(world, latents: torch.Tensor, text: str, *, editor=None, truncation: Optional[float] = None,
                  strength: float = 1.0, settings=None) -> EditResult:
    """Edit W+ latents toward ``text`` (one sentence of any number of attributes) with a ManiCLIP
    editor: the given one (a module or a file), else the world's ``maniclip_editor``.
    ``truncation``: how ``latents`` were drawn (None: the settings' ``maniclip.truncation``, 0.7 as
    ``World.sample``; pass 1.0 for inverted images). ``strength`` scales the offset (1: the
    authors')."""
    t0 = time.time()
    if editor is None:
        editor = getattr(world, "maniclip_editor", None)
        if editor is None:
            raise ValueError(f"the {world.name} world has no trained ManiCLIP editor yet; train one with "
                             f"`hairlib train maniclip --world {world.name}`, or give an editor file (`--editor PATH` "
                             f"on the command line, editor=PATH in Python; the authors' pretrained_edit_model.pth.tar "
                             f"for the ffhq world at 256 px)")
    if not isinstance(editor, ManiCLIPEditor):
        editor = load_maniclip_editor(editor, world.device)
    c = editor.config
    G = world.generator
    if (c.num_ws, c.style_dim) != (G.num_ws, G.style_dim):
        raise ValueError(f"this ManiCLIP editor edits W+ [{c.num_ws}, {c.style_dim}]; the {world.name} world's "
                         f"generator has [{G.num_ws}, {G.style_dim}]" +
                         (" (the authors' editor is for the 256 px generator: load_world('ffhq', resolution=256))"
                          if c.num_ws == 14 else ""))
    if truncation is None:
        truncation = method_settings(world, settings, "maniclip", ManiCLIPTrainConfig()).truncation
    editor = editor.to(world.device).eval()
    with torch.no_grad():
        w = latents.to(world.device)
        src = world.generate(w)
        offset = editor(editor_input(world, w, truncation), world.clip.embed_text_raw(text))
        w_hat = w + strength * getattr(editor, "truncation", 0.7) * offset
        images = world.generate(w_hat).clamp(-1, 1)
    return EditResult(latents=w_hat, images=images, source_images=src.clamp(-1, 1), method="maniclip", text=text,
                      seconds=time.time() - t0, info={"strength": strength, "truncation": truncation,
                                                      "offset_norm": offset.norm(dim=(1, 2)).mean().item()})


# ---------------------------------------------------------------------------------------------
# save / load

def save_maniclip(editor: ManiCLIPEditor, path, extra: Optional[dict] = None) -> Path:
    """Atomic safetensors file with the editor's sizes and training truncation in its metadata."""
    meta = {"config": editor.config.to_dict(), "truncation": getattr(editor, "truncation", 0.7),
            "train": getattr(editor, "train_config", {}), **(extra or {})}
    return save_with_meta(editor, path, meta)


def load_maniclip_editor(path: Union[str, Path], device="cpu", config: Optional[ManiCLIPConfig] = None) -> ManiCLIPEditor:
    """A ManiCLIP editor from our safetensors file or the authors' ``pretrained_edit_model.pth.tar``
    (``config``: its sizes, default the released model's; the CLIP stored inside it is dropped)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no ManiCLIP editor at {path}")
    if path.suffix != ".safetensors":
        editor = load_maniclip(path, device, config)
        editor.truncation = 0.7
        return editor.requires_grad_(False)
    sd, meta = read_with_meta(path)
    if "config" not in meta:
        raise ValueError(f"{path} holds no ManiCLIP editor (its metadata has no editor config)")
    editor = ManiCLIPEditor(ManiCLIPConfig.from_dict(meta["config"]))
    load_state_dict_strict(editor, sd, what=str(path))
    editor.truncation = float(meta.get("truncation", 0.7))
    editor.train_config = meta.get("train", {})
    return editor.to(device).eval().requires_grad_(False)

