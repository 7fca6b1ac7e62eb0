"""Recipe: the mini world's small CLIP, trained contrastively on renders and their captions.

    python -m hairlib.mini.train_clip [--steps N] [--out DIR] [--threads T] [--device cuda]
    python -m hairlib.mini.train_clip --stage see --no-export && python -m hairlib.mini.train_clip --stage tell
    python -m hairlib.mini.train_clip --stage see-resnet --no-export && ... --stage tell-resnet
    python -m hairlib.mini.train_clip --stage tell-frames
    python -m hairlib.mini.train_clip --stage tell-parts
    python -m hairlib.mini.train_clip --stage see-conv-own   # the shipped CLIP

The shipped CLIP is the last of this chain (``clip.json``: its ``command`` and
``previous_command``); each stage starts from the one before it. An open_clip architecture with
CLIP's real BPE tokenizer, trained on fresh renders of the training split with CLIP's symmetric
contrastive loss, each render paired with one caption drawn from ``hairlib.mini.captions`` (full
descriptions, hair-only, attribute-only, or one attribute's prompt). Every stage is resumable
(atomic ``DIR/state.pt``) and ends with zero-shot accuracy per label on renders of the held-out
attribute combinations with the held-out phrasings (``attribute_prompts(..., split="heldout")``),
with the training phrasings, and per held-out combination (``zero_shot_by_combination``). Ships
``clip.safetensors`` (fp16) + ``clip.json``.

* main (``RECIPE``): ``MINI_CLIP`` from scratch, a 4-layer ViT over 16 px patches of the 64 px
  render and a 3-layer text transformer.
* ``see`` (``SEE``): the image tower alone (the text tower frozen): the contrastive loss against
  the frozen texts, a linear probe per label on the image embedding at full weight
  (``probe_weight``, ``probe_focus``; trained beside, never shipped) and the hold on HairCLIP's
  prompts (``hold_weight``: each render's softmax over HairCLIP's hairstyle prompts and over its
  colour prompts kept to the starting CLIP's by KL).
* ``tell`` (``TELL``): that image tower locked (LiT), the text tower alone: the contrastive loss,
  the prototype loss (each image classified among its label's value prompts, ``prototype_weight``,
  ``prototype_focus``) and HairCLIP's prompts' raw text embeddings held to the start's
  (``keep_weight``: relative MSE), so that the shipped HairCLIP mapper keeps its conditions.
* ``see-resnet`` (``SEE_RESNET``): a new image tower, open_clip's ModifiedResNet
  (``VISION["resnet"]``), trained from scratch as ``see`` against the ViT CLIP's frozen text tower,
  its image embedding also drawn to the ViT's (``distill_weight``: 1 - cosine).
* ``tell-resnet`` (``TELL_RESNET``): ``tell`` on that tower (its batch-norm statistics locked too).
* ``tell-frames`` (``TELL_FRAMES``): ``tell-resnet`` continued, the prototype loss's prompts drawn
  afresh each step in random training templates, a binary attribute's absence as plain
  sentences (``prototype_frames``, ``framed_prompts``).
* ``tell-parts`` (``TELL_PARTS``): ``tell-frames`` continued 600 steps from the shipped CLIP.
* ``see-conv-own`` (``SEE_CONV_OWN``): a new image tower, the attribute classifier's trunk
  mean-pooled with a linear projection (``VISION["conv"]``, ``hairlib.nets.mini_towers``),
  trained from scratch as ``see-resnet`` against the ``tell-parts`` CLIP's frozen text tower, its
  embedding not drawn to the teacher's. The text tower is ``tell-parts``' bit for bit, so
  HairCLIP's text conditions are unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from hairlib.methods.hairclip import color_text, style_text
from hairlib.mini import captions as C
from hairlib.mini import render as R
from hairlib.mini.data import RenderBatches, stream
from hairlib.mini.render import heldout_combination_index
from hairlib.mini.shipping import WEIGHTS_DIR, recipe_main, save_shipped, stage_dir
from hairlib.mini.vocab import (HAIR_COLORS, HAIRSTYLES, HELDOUT_COMBINATIONS, LABEL_NAMES, value_index, value_name,
                                values_of)
from hairlib.nets.clip import CLIP, OPENAI_MEAN, OPENAI_STD, _bpe_tokenizer, build_model
from hairlib.train.simple import fit

DEFAULT_OUT = Path("runs") / "mini_clip"

MINI_CLIP = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "head_width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 96, "heads": 3, "layers": 3},
}
# Sized for a CPU core: 0.4 s per step of 128 pairs (a ViT over 8 px patches, 6 x 192, took 3 s).
# Captions are at most 36 tokens with SOT/EOT; attribute prompts at most 16.

# Image towers a recipe may name (``Recipe.vision``; "" is MINI_CLIP's own ViT). "resnet": open_clip's
# ModifiedResNet (CLIP's RN50 layout: 3-conv stem, bottleneck stages, attention pooling), 2 blocks per
# stage at stem width 16: 1.7 M parameters, 0.22 s per forward + backward of 128 renders on 2 threads
# (the ViT: 0.9 M, 0.15 s). A convolution reads a hairstyle's shape wherever its colour: the ViT told
# the held-out (style, colour) pairs by the colour it saw the shape with.
VISION = {"resnet": {"image_size": 64, "layers": [2, 2, 2, 2], "width": 16, "head_width": 64},
          # "conv": the attribute classifier's trunk (``hairlib.nets.mini_towers``), mean-pooled, a linear projection
          "conv": {"image_size": 64, "timm_model_name": "hairlib_mini_convnet", "timm_pool": "avg",
                   "timm_proj": "linear"}}


@dataclass(frozen=True)
class Recipe:
    steps: int = 6000  # optimisation steps
    batch: int = 128  # image-caption pairs per step
    lr: float = 5e-4  # AdamW, cosine decay
    weight_decay: float = 0.1
    p_styles: tuple = (0.35, 0.25, 0.25, 0.15)  # caption kinds: full, hair, attr, one attribute's prompt
    seed: int = 3
    ckpt_every: int = 250
    eval_n: int = 1000  # held-out renders for zero-shot accuracy
    init: str = ""  # start from these weights: a .safetensors file, a run's state.pt, "shipped"
    freeze_text: bool = False  # train the image tower only (text embeddings stay exactly as they were)
    freeze_image: bool = False  # train the text tower only (LiT's locked image tower; logit scale trained)
    prototype_weight: float = 0.0  # weight of the per-label prompt-prototype classification loss
    keep_weight: float = 0.0  # hold the raw text embeddings of HairCLIP's mini prompts to the starting CLIP's
    probe_weight: float = 0.0  # a linear probe per label on the image embedding, trained beside (not shipped)
    hold_weight: float = 0.0  # hold how the image tower reads HairCLIP's prompts: KL to the starting CLIP's
    prototype_focus: tuple = ()  # ((label, weight), ...) in the prototype loss's mean (others weigh 1)
    probe_focus: tuple = ()  # ((label, weight), ...) in the probes' mean (others weigh 1)
    contrastive_weight: float = 1.0  # CLIP's loss itself (0: the other losses alone)
    vision: str = ""  # the image tower (a key of VISION; "": MINI_CLIP's ViT)
    fresh_image: bool = False  # a new image tower: only the rest comes from ``init``, which is the teacher
    distill_weight: float = 0.0  # 1 - cosine of the image embedding to the teacher's (the starting CLIP's)
    prototype_frames: int = 0  # > 0: the prototype loss's prompts drawn afresh each step, this many per value,
    # in random training templates (``framed_prompts``); 0: ``attribute_prompts(split="train")`` and TRAIN_NEUTRAL


RECIPE = Recipe()
# "see": the image tower alone (text frozen), every label's probe at full weight (12 / 12 labels:
# the probes' mean x 12), the contrastive loss against the frozen texts, the hold on HairCLIP's prompts
SEE = Recipe(steps=1500, lr=3e-4, seed=13, init="shipped", freeze_text=True, probe_weight=12.0, hold_weight=1.0,
             probe_focus=(("eyeglasses", 4), ("hairstyle", 3), ("earrings", 2)))
# "tell": that image tower locked (LiT), the text tower alone: contrastive + prototype losses,
# HairCLIP's prompts held to the start's texts
TELL = Recipe(steps=1500, lr=3e-4, seed=12, init=str(stage_dir(DEFAULT_OUT, "see") / "state.pt"), freeze_image=True,
              prototype_weight=1.0, keep_weight=10.0,
              prototype_focus=(("eyeglasses", 3), ("earrings", 2), ("age", 2), ("mustache", 2), ("hairstyle", 2)))
# "see-resnet": a convolutional image tower (VISION["resnet"]) from scratch against the shipped
# (see/tell ViT) CLIP's frozen text tower, as "see" with hairstyle weighted 6 and the image
# embedding drawn to the ViT's (distill_weight); "tell-resnet": a "tell" on it
SEE_RESNET = replace(SEE, steps=3000, lr=5e-4, seed=16, vision="resnet", fresh_image=True, distill_weight=5.0,
                     probe_focus=(("hairstyle", 6), ("eyeglasses", 4), ("earrings", 2)))
TELL_RESNET = replace(TELL, seed=17, vision="resnet", init=str(stage_dir(DEFAULT_OUT, "see-resnet") / "state.pt"))
# "tell-frames": "tell-resnet" continued, the image tower still locked, the prototype loss's
# prompts drawn afresh each step in random training templates (``framed_prompts``)
TELL_FRAMES = replace(TELL_RESNET, steps=1200, seed=18, init=str(stage_dir(DEFAULT_OUT, "tell-resnet") / "state.pt"),
                      prototype_frames=3)
# "tell-parts": the shipped "tell-frames" continued 600 steps
TELL_PARTS = replace(TELL_FRAMES, steps=600, seed=19, init="shipped")
# "see-conv-own": the attribute classifier's trunk (VISION["conv"]) from scratch against the shipped
# "tell-parts" CLIP's frozen texts, as "see-resnet" but with its embedding not drawn to the teacher's
SEE_CONV_OWN = replace(SEE_RESNET, steps=1000, seed=20, vision="conv", distill_weight=0.0)
# ``--stage NAME`` -> its recipe
STAGES = {"see": SEE, "tell": TELL, "see-resnet": SEE_RESNET, "tell-resnet": TELL_RESNET, "tell-frames": TELL_FRAMES,
          "tell-parts": TELL_PARTS, "see-conv-own": SEE_CONV_OWN}
# sentences that stand for "no <attribute>" in the prototype loss (zero-shot uses NEUTRAL_PROMPTS)
TRAIN_NEUTRAL = ("a photo of a face.", "a picture of someone.", "a person.")


def captions_for(params, rng: np.random.Generator, p_styles=RECIPE.p_styles):
    """One training caption per render (training-split phrasings only): a full description, the
    hair, some attributes, or one attribute's prompt, in the odds ``p_styles``."""
    out = []
    for p in params:
        kind = rng.choice(4, p=np.asarray(p_styles) / sum(p_styles))
        if kind < 3:
            out.append(C.caption(p, rng, style=("full", "hair", "attr")[kind], split="train"))
            continue
        labels = p.labels()
        name = LABEL_NAMES[int(rng.integers(len(LABEL_NAMES)))]
        if labels[name] < 0:  # a bald head's colour: describe the hair instead
            name = "hairstyle"
        prompts = C.attribute_prompts(name, split="train")[value_name(name, labels[name])]
        out.append(prompts[int(rng.integers(len(prompts)))])
    return out


def _normalize(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(OPENAI_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=images.device).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


def contrastive_loss(model, images: torch.Tensor, tokens: torch.Tensor, image_emb=None) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over a batch of matching (image, text) pairs. ``image_emb``:
    ``model.encode_image`` of the images, if already computed."""
    img = F.normalize(model.encode_image(_normalize(images)) if image_emb is None else image_emb, dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp().clamp(max=100) * img @ txt.t()
    target = torch.arange(len(images), device=images.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def config_of(cfg: Recipe) -> dict:
    """A recipe -> the open_clip config it trains: MINI_CLIP with the recipe's image tower."""
    if cfg.vision and cfg.vision not in VISION:
        raise ValueError(f"unknown image tower {cfg.vision!r}; known: {sorted(VISION)}")
    return dict(MINI_CLIP, vision_cfg=dict(VISION[cfg.vision])) if cfg.vision else MINI_CLIP


def init_config(init: str) -> dict:
    """``Recipe.init`` -> the open_clip config of those weights: a run's state.pt meta, or the
    .json beside a .safetensors file (the shipped clip.json), else MINI_CLIP."""
    import json

    path = Path(WEIGHTS_DIR) / "clip.safetensors" if init == "shipped" else Path(init)
    if path.suffix == ".pt" and path.exists():
        meta = torch.load(path, map_location="cpu", weights_only=True).get("meta") or {}
        return meta.get("config") or MINI_CLIP
    if path.with_suffix(".json").exists():
        return json.loads(path.with_suffix(".json").read_text()).get("config") or MINI_CLIP
    return MINI_CLIP


def train(cfg: Recipe = RECIPE, out_dir=DEFAULT_OUT, *, config=None, device="cpu", workers: int = 0,
          progress: bool = True):
    """-> the trained open_clip model (eval mode). ``workers`` render ahead in other processes.
    ``config``: the open_clip config (default: ``config_of(cfg)``)."""
    import functools

    config = config_of(cfg) if config is None else config
    if cfg.fresh_image and not cfg.init:
        raise ValueError("fresh_image takes everything but the image tower, and the teacher, from init")
    if (cfg.hold_weight or cfg.distill_weight) and not cfg.init:
        raise ValueError("hold_weight and distill_weight need a starting CLIP (init)")
    torch.manual_seed(cfg.seed)
    model = build_model(config)[0].to(device)
    start = model  # the starting CLIP (keep/hold targets); a resumed run rebuilds it from ``init``
    if cfg.fresh_image:  # a new image tower; the text tower (and logit scale) and the teacher from init
        weights = init_weights(cfg.init)
        start = build_model(init_config(cfg.init))[0].to(device)
        start.load_state_dict(weights)
        fresh = {k: v for k, v in model.state_dict().items() if k.startswith("visual.")}  # kept as initialised
        try:
            model.load_state_dict({**{k: v for k, v in weights.items() if not k.startswith("visual.")}, **fresh})
        except RuntimeError as e:
            raise ValueError(f"init {cfg.init} does not fit outside the image tower: {e}") from None
    elif cfg.init:
        if (Path(out_dir) / "state.pt").exists():
            start = build_model(config)[0].to(device)
        start.load_state_dict(init_weights(cfg.init))
    tok = _bpe_tokenizer(config["text_cfg"]["context_length"])
    if cfg.freeze_text and cfg.freeze_image:
        raise ValueError("freeze_text and freeze_image together leave nothing to train")
    if cfg.freeze_text:  # everything outside the image tower, logit scale included
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith("visual."))
    if cfg.freeze_image:
        model.visual.requires_grad_(False)
    probes = None
    if cfg.probe_weight:
        probes = torch.nn.ModuleDict({k: torch.nn.Linear(config["embed_dim"], len(values_of(k))) for k in LABEL_NAMES})
        probes.to(device)
        model.probes = probes  # trained and checkpointed with the model; dropped at export
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trained if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in trained if not (p.ndim >= 2 and "embedding" not in n)]
    protos = label_prototypes(model, tok, device) if cfg.prototype_weight and cfg.freeze_text else None
    keep = keep_targets(start, tok, device) if cfg.keep_weight or cfg.hold_weight else None
    teacher = None
    if cfg.hold_weight or cfg.distill_weight:  # the starting CLIP, frozen: how its image tower reads renders
        import copy

        teacher = (start if start is not model else copy.deepcopy(model)).eval().requires_grad_(False)
        if hasattr(teacher, "probes"):
            del teacher.probes
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)

    data = RenderBatches(cfg.batch, cfg.seed, caption_fn=functools.partial(captions_for, p_styles=cfg.p_styles))
    batches = None

    def loss_fn(step: int) -> torch.Tensor:
        nonlocal batches
        if batches is None:  # started (or resumed) at this step
            batches = stream(data, step, workers)
        item = next(batches)
        images = item["images"].to(device)
        if cfg.freeze_image:  # locked, batch-norm statistics included (fit puts the model in train mode)
            model.visual.eval()
        with torch.set_grad_enabled(not cfg.freeze_image):
            emb = model.encode_image(_normalize(images))  # [N, embed_dim], shared by the losses below
        loss = emb.new_zeros(())
        if cfg.contrastive_weight:
            loss = cfg.contrastive_weight * contrastive_loss(model, images, tok(item["captions"]).to(device), image_emb=emb)
        if cfg.prototype_weight:
            p = protos
            if p is None:  # a trained text tower: the prototypes move with it (and their prompts, with frames)
                framed = framed_prompts(np.random.default_rng([cfg.seed, step]), cfg.prototype_frames) \
                    if cfg.prototype_frames else None
                p = label_prototypes(model, tok, device, grad=True, prompts=framed)
            loss = loss + cfg.prototype_weight * prototype_loss(model, images, item["labels"], p, image_emb=emb,
                                                                weights=dict(cfg.prototype_focus))
        if probes is not None:
            w = torch.tensor([float(dict(cfg.probe_focus).get(k, 1.0)) for k in probes], device=device)
            loss = loss + cfg.probe_weight * (w * torch.stack([
                F.cross_entropy(probes[k](emb), torch.as_tensor(item["labels"][k]).to(device), ignore_index=-1)
                for k in probes])).sum() / w.sum()
        t_emb = None
        if teacher is not None:
            with torch.no_grad():
                t_emb = teacher.encode_image(_normalize(images))
        if cfg.distill_weight:
            loss = loss + cfg.distill_weight * (1 - F.cosine_similarity(emb, t_emb, dim=-1)).mean()
        if keep is not None:
            tokens, target = keep
            text = model.encode_text(tokens)
            loss = loss + cfg.keep_weight * (text - target).pow(2).mean() / target.pow(2).mean()
            if cfg.hold_weight:
                loss = loss + cfg.hold_weight * hold_loss(emb, text, t_emb, target, teacher.logit_scale.exp())
        return loss

    fit(model, opt, steps=cfg.steps, lr=cfg.lr, loss_fn=loss_fn, out_dir=out_dir, ckpt_every=cfg.ckpt_every,
        meta={"recipe": asdict(cfg), "config": config}, desc="train mini CLIP", progress=progress)
    if probes is not None:
        del model.probes
    return model


def init_weights(init: str) -> Dict[str, torch.Tensor]:
    """``Recipe.init`` -> a CLIP state dict (fp32): "shipped", a ``.safetensors`` file, or a run's
    ``state.pt`` (its training-only probes dropped)."""
    from safetensors.torch import load_file

    path = Path(WEIGHTS_DIR) / "clip.safetensors" if init == "shipped" else Path(init)
    if not path.exists():
        raise FileNotFoundError(f"CLIP init weights not found: {path}")
    if path.suffix == ".pt":
        weights = torch.load(path, map_location="cpu", weights_only=True)["model"]
    else:
        weights = load_file(str(path))
    return _without_probes(weights)


def _without_probes(weights: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A training state's weights -> the CLIP's own (fp32): the label probes trained beside dropped."""
    return {k: v.float() for k, v in weights.items() if not k.startswith("probes.")}


def label_prototypes(model, tok, device="cpu", grad: bool = False, prompts=None) -> Dict[str, torch.Tensor]:
    """{label: [values, embed_dim]} unit text embeddings: the mean of each value's training
    prompts (``attribute_prompts(split="train")``); "no" of a binary attribute is ``TRAIN_NEUTRAL``.
    ``prompts``: {label: {value: sentences}} to use instead (``framed_prompts``). ``grad``: keep
    the graph (a text tower in training), all prompts in one batch."""
    groups = []  # (label, value) -> its prompts
    for name in LABEL_NAMES:
        if prompts is not None:
            groups += [(name, v, list(ps)) for v, ps in prompts[name].items()]
            continue
        values = C.attribute_prompts(name, split="train")
        if list(values) == ["no", "yes"]:
            values = {"no": list(TRAIN_NEUTRAL), "yes": values["yes"]}
        groups += [(name, v, ps) for v, ps in values.items()]
    with torch.set_grad_enabled(grad):
        emb = F.normalize(model.encode_text(tok([p for _, _, ps in groups for p in ps]).to(device)), dim=-1)
    out, i = {}, 0
    for name, _, ps in groups:
        out.setdefault(name, []).append(F.normalize(emb[i:i + len(ps)].mean(0), dim=-1))
        i += len(ps)
    return {k: torch.stack(v) for k, v in out.items()}


def framed_prompts(rng: np.random.Generator, k: int = 2) -> Dict[str, Dict[str, List[str]]]:
    """{label: {value: k sentences}} for the prototype loss, each in a random training template
    and form (``captions.value_sentence``; a gender-neutral person, gender's own values aside);
    a binary attribute's absence is ``k`` sentences that state nothing (``captions.plain_sentences``
    and TRAIN_NEUTRAL), never zero-shot's ``NEUTRAL_PROMPTS``. The fixed prompts teach the text
    tower the yes/no boundary in one frame ("a photo of a person with glasses." against "a photo
    of a face."); zero-shot reads it in frames and against a neutral sentence it never saw."""
    plain = sorted(set(C.plain_sentences(exclude=NEUTRAL_PROMPTS)) | set(TRAIN_NEUTRAL))
    out = {}
    for name in LABEL_NAMES:
        values = list(values_of(name))
        binary = values == ["no", "yes"]
        out[name] = {v: ([plain[int(i)] for i in rng.choice(len(plain), size=k, replace=False)] if binary and v == "no"
                         else [C.value_sentence(name, v, rng) for _ in range(k)]) for v in values}
    return out


def hairclip_prompts() -> List[str]:
    """The mini HairCLIP prompts: the hairstyles (bald has none), then the colours."""
    return [style_text(s) for s in HAIRSTYLES if s != "bald"] + [color_text(c) for c in HAIR_COLORS]


@torch.no_grad()
def keep_targets(model, tok, device="cpu"):
    """(tokens, raw text embeddings) of ``hairclip_prompts()`` under ``model`` as it is now (21 rows)."""
    tokens = tok(hairclip_prompts()).to(device)
    return tokens, model.encode_text(tokens).detach()


def prototype_loss(model, images: torch.Tensor, labels: Dict[str, torch.Tensor], protos: Dict[str, torch.Tensor],
                   image_emb=None, weights: Dict[str, float] = None) -> torch.Tensor:
    """Mean over labels of the cross-entropy of classifying each image among its label's value
    prototypes, at CLIP's logit scale (labels of -1, e.g. no hair colour when bald, are skipped).
    ``weights``: label -> its weight in the mean (1 if absent)."""
    img = F.normalize(model.encode_image(_normalize(images)) if image_emb is None else image_emb, dim=-1)
    scale = model.logit_scale.exp().clamp(max=100)
    losses = torch.stack([F.cross_entropy(scale * img @ protos[k].t(), torch.as_tensor(labels[k]).to(images.device),
                                          ignore_index=-1) for k in protos])
    w = torch.tensor([float((weights or {}).get(k, 1.0)) for k in protos], device=losses.device)
    return (losses * w).sum() / w.sum()


def hold_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, teacher_image: torch.Tensor,
              teacher_text: torch.Tensor, scale) -> torch.Tensor:
    """KL(teacher || student) of each image's softmax over the hairstyle prompts and, separately,
    over the colour prompts of ``keep_targets`` (its row order: hairstyles, then colours), both at
    the teacher's logit scale. Raw (unnormalised) embeddings in, as the towers return them."""
    n_styles = sum(s != "bald" for s in HAIRSTYLES)
    s_logits = scale * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).t()
    t_logits = scale * F.normalize(teacher_image, dim=-1) @ F.normalize(teacher_text, dim=-1).t()
    kl = [F.kl_div(F.log_softmax(s_logits[:, sl], 1), F.log_softmax(t_logits[:, sl], 1), log_target=True,
                   reduction="batchmean") for sl in (slice(0, n_styles), slice(n_styles, None))]
    return (kl[0] + kl[1]) / 2


NEUTRAL_PROMPTS = ("a photo of a person.", "a portrait of a person.", "a picture of a person.")


@torch.no_grad()
def zero_shot(clip: CLIP, n: int = RECIPE.eval_n, split: str = "heldout", phrasings: str = "heldout",
              seed: int = 2024, rendered=None) -> Dict[str, float]:
    """Zero-shot accuracy per label: each render gets the value whose prompts (mean embedding)
    are closest; renders of ``split`` combinations, prompts of ``phrasings``. A binary attribute's
    absence is the neutral ``NEUTRAL_PROMPTS`` (its presence must score above a plain "a photo of
    a person."), not a negated phrase: the main stage's CLIP reads "with no beard" as "beard".
    ``rendered``: (images [N, 3, H, W] in [-1, 1], labels) already rendered (``heldout_renders``)."""
    x, labels = rendered if rendered is not None else heldout_renders(n, seed, split)
    acc = {}
    for name, pred in _zero_shot_predictions(clip, x, phrasings).items():
        y = torch.as_tensor(labels[name])
        keep = y >= 0
        acc[name] = float((pred[keep] == y[keep]).float().mean())
    return acc


@torch.no_grad()
def zero_shot_by_combination(clip: CLIP, n: int = RECIPE.eval_n, seed: int = 2024,
                             phrasings: str = "heldout", rendered=None) -> Dict[str, Dict[str, float]]:
    """Held-out zero-shot split by the held-out combination each render carries: {label: {"beard=yes,
    earrings=yes": accuracy, ...}} (combinations where the label applies to no render are left out).
    Each held-out render carries one of ``vocab.HELDOUT_COMBINATIONS``, a pair no training render
    shows; a label that fails on one combination only has been learnt with the other attribute of the
    pair as a cue (the shipped CLIP: earrings on bearded faces 0 %, on the other held-out faces 72-98 %).
    ``rendered``: held-out renders already made (``heldout_renders``), as ``zero_shot``'s."""
    x, labels = rendered if rendered is not None else heldout_renders(n, seed)
    lab = {k: np.asarray(v) for k, v in labels.items()}
    combo = heldout_combination_index(lab)
    out = {}
    for name, pred in _zero_shot_predictions(clip, x, phrasings).items():
        ok, y = pred.numpy() == lab[name], lab[name]
        out[name] = {",".join(f"{k}={v}" for k, v in c.items()): round(float(ok[m].mean()), 4)
                     for j, c in enumerate(HELDOUT_COMBINATIONS) if (m := (combo == j) & (y >= 0)).any()}
    return out


def _zero_shot_predictions(clip: CLIP, x: torch.Tensor, phrasings: str) -> Dict[str, torch.Tensor]:
    """{label: predicted value index [N]} of images ``x`` by zero-shot (``zero_shot``'s rule)."""
    x, n = x.to(clip.device), len(x)
    img = torch.cat([clip.encode_image(x[i:i + 256]) for i in range(0, n, 256)])
    out = {}
    for name in LABEL_NAMES:
        prompts = C.attribute_prompts(name, split=phrasings)
        values = list(prompts)
        if values == ["no", "yes"]:  # absence as a neutral sentence: small CLIPs cannot read "no glasses"
            prompts = {"no": list(NEUTRAL_PROMPTS), "yes": prompts["yes"]}
        txt = F.normalize(torch.stack([clip.encode_text(prompts[v]).mean(0) for v in values]), dim=-1)
        out[name] = torch.as_tensor([value_index(name, values[i]) for i in (img @ txt.t()).argmax(1).tolist()])
    return out


def heldout_renders(n: int = RECIPE.eval_n, seed: int = 2024, split: str = "heldout"):
    """-> (images [n, 3, 64, 64] in [-1, 1], labels) of ``n`` renders of ``split`` combinations."""
    images, _, labels = R.render_batch(R.sample_params(np.random.default_rng(seed), n=n, split=split))
    return R.to_tensor(images), labels


@torch.no_grad()
def checkpoint_report(state_path, n: int = 500, seed: int = 2024, config=MINI_CLIP) -> dict:
    """A run's checkpoint (``state.pt``) -> {"step", "heldout": zero-shot per label on ``n``
    held-out renders with the held-out phrasings, "probe": the label probes' accuracy on the same
    renders (runs with ``probe_weight``; else absent)}: how a run is watched while it trains."""
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    weights = state["model"]
    config = (state.get("meta") or {}).get("config") or config
    model = build_model(config)[0]
    model.load_state_dict(_without_probes(weights))
    model.eval()
    clip = CLIP(model, _bpe_tokenizer(config["text_cfg"]["context_length"]), name="mini-clip")
    images, labels = heldout_renders(n, seed)  # rendered once, read by zero-shot and the probes
    out = {"step": int(state["step"]),
           "heldout": {k: round(v, 4) for k, v in zero_shot(clip, rendered=(images, labels)).items()}}
    names = sorted({k.split(".")[1] for k in weights if k.startswith("probes.")})
    if names:
        emb = model.encode_image(_normalize(images))
        out["probe"] = {}
        for k in names:
            lin = torch.nn.Linear(emb.shape[1], len(values_of(k)))
            lin.load_state_dict({"weight": weights[f"probes.{k}.weight"], "bias": weights[f"probes.{k}.bias"]})
            y = torch.as_tensor(labels[k])
            keep = y >= 0
            out["probe"][k] = round(float((lin(emb).argmax(1)[keep] == y[keep]).float().mean()), 4)
    return out


def export(model, metrics: dict, cfg: Recipe = RECIPE, config=None, dest: Path = WEIGHTS_DIR) -> Path:
    """fp16 weights (loaded back as fp32) + config (default ``config_of(cfg)``), recipe, zero-shot
    accuracy and the command (the ``--stage`` whose recipe ``cfg`` is)."""
    import copy
    import json

    config = config_of(cfg) if config is None else config
    stage = next((n for n, r in STAGES.items() if replace(r, steps=cfg.steps) == cfg), None)
    meta = {"config": config, "recipe": asdict(cfg), "step": cfg.steps, "zero_shot": metrics,
            "command": "python -m hairlib.mini.train_clip" + (f" --stage {stage}" if stage else "")}
    if cfg.init:  # a fine-tune: the commands that made what it started from (the shipped CLIP, its init's run)
        previous = Path(dest) / "clip.json"
        prev = json.loads(previous.read_text()) if previous.exists() else {}
        chain = [c for c in (prev.get("previous_command", ""), prev.get("command", "")) if c]
        run = next((n for n in STAGES if Path(cfg.init) == stage_dir(DEFAULT_OUT, n) / "state.pt"), None)
        if run and not prev.get("command", "").endswith(f"--stage {run}"):  # an unexported run's state
            chain.append(f"python -m hairlib.mini.train_clip --stage {run} --no-export")
        meta["previous_command"] = "; then ".join(chain)
    half = copy.deepcopy(model).half()
    return save_shipped("clip", half, meta, dest)


def main(argv=None) -> int:
    def run(cfg, args):
        model = train(cfg, args.out, device=args.device, workers=args.workers)
        clip = CLIP(model.float(), _bpe_tokenizer(MINI_CLIP["text_cfg"]["context_length"]), name="mini-clip")
        rendered = heldout_renders()  # once, read by the three
        return model, {"heldout": zero_shot(clip, rendered=rendered),
                       "train_phrasings": zero_shot(clip, phrasings="train", rendered=rendered),
                       "heldout_by_combination": zero_shot_by_combination(clip, rendered=rendered)}

    return recipe_main(argv, doc=__doc__, default_out=DEFAULT_OUT, recipe=RECIPE, run=run, export=export,
                       device=True, workers=True, stages=STAGES)


if __name__ == "__main__":
    raise SystemExit(main())
