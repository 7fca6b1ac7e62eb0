"""The mini world at run time: the shipped networks in ``hairlib/mini/weights/``, loaded.

Each network is ``<name>.safetensors`` (its state dict) beside ``<name>.json`` (the config that
rebuilds it, its recipe and lineage, its measured quality). This module reads them; recipes
(the ``train_*`` modules) write them. Nothing here imports a recipe.

    from hairlib.mini.world import load_generator, load_mini
    G = load_generator()          # the shipped StyleGAN2, eval mode, frozen
    world = load_mini("cpu")      # every shipped net wired into a World
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from hairlib.align import NoFaceError, WrongWorldError, landmarks
from hairlib.invert import InvertConfig
from hairlib.mini import captions, vocab
from hairlib.mini import render as R
from hairlib.mini.data import render_references
from hairlib.nets.clip import CLIP, load_clip
from hairlib.nets.loading import load_safetensors, load_state_dict_strict
from hairlib.nets.mini_nets import (AttributeClassifier, ClassifierConfig, Encoder, EncoderConfig, IdentityConfig,
                                    IdentityNet, MiniParser, ParserConfig)
from hairlib.nets.stylegan2 import Generator, StyleGAN2Config

__all__ = ["WEIGHTS_DIR", "unit_channels", "REQUIRED", "INVERT", "load_net", "load_generator", "load_clip_net", "load_identity",
           "load_classifier", "load_encoder", "load_parser", "classifier_features", "perceptual_features",
           "weights_dir", "shipped_mappers", "render_aligner", "flatness", "maniclip_sentences"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
REQUIRED = ("stylegan2", "clip", "identity", "classifier", "encoder")  # the parser and mappers are optional

# Inversion after the encoder (World.invert_config), with ``perceptual_features``: 200 Adam steps
# at lr 0.1 (ramped), pixels + features. On 200 held-out renders: 28.2 dB, every label kept on 96 %.
INVERT = InvertConfig(steps=200, lr=0.1, lr_schedule="ramp", feature_weight=1.0)


def weights_dir(path=None) -> Path:
    """``path``, else ``$HAIRLIB_MINI_WEIGHTS``, else the package's ``weights/``."""
    return Path(path or os.environ.get("HAIRLIB_MINI_WEIGHTS") or WEIGHTS_DIR)


def load_net(name: str, build: Callable[[Dict[str, Any]], nn.Module], dest: Path = WEIGHTS_DIR,
             device="cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild ``name`` with ``build(meta)`` and load its weights strictly (checked against the
    sha256 in ``name.json``: ``load_safetensors``); eval mode, frozen."""
    dest = Path(dest)
    path = dest / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"mini-world weights {path} are missing; reinstall hairlib (`pip install "
                                f"--force-reinstall hairlib`), or rebuild them with their recipe (hairlib/mini/README.md)")
    sd = load_safetensors(path)[0]
    meta = json.loads((dest / f"{name}.json").read_text())
    model = build(meta)
    load_state_dict_strict(model, sd, what=str(path))
    return model.to(device).eval().requires_grad_(False), meta


def load_generator(dest: Path = WEIGHTS_DIR, device="cpu") -> Generator:
    """The shipped StyleGAN2 (its EMA weights)."""
    return load_net("stylegan2", lambda meta: Generator(StyleGAN2Config.from_dict(meta["arch"])), dest, device)[0]


def load_clip_net(dest: Path = WEIGHTS_DIR, device="cpu") -> CLIP:
    """The shipped mini CLIP (CLIP's BPE tokenizer, a small ViT/ResNet pair of towers)."""
    meta = json.loads((Path(dest) / "clip.json").read_text())
    return load_clip("mini-clip", device, config=meta["config"], state_dict=Path(dest) / "clip.safetensors")


def load_identity(dest: Path = WEIGHTS_DIR, device="cpu") -> IdentityNet:
    return load_net("identity", lambda meta: IdentityNet(IdentityConfig.from_dict(meta["config"])), dest, device)[0]


def load_classifier(dest: Path = WEIGHTS_DIR, device="cpu") -> AttributeClassifier:
    return load_net("classifier", lambda meta: AttributeClassifier(ClassifierConfig.from_dict(meta["config"])),
                    dest, device)[0]


def load_encoder(dest: Path = WEIGHTS_DIR, device="cpu") -> Encoder:
    return load_net("encoder", lambda meta: Encoder(EncoderConfig.from_dict(meta["config"])), dest, device)[0]


def load_parser(dest: Path = WEIGHTS_DIR, device="cpu") -> MiniParser:
    return load_net("parser", lambda meta: MiniParser(ParserConfig.from_dict(meta["config"])), dest, device)[0]


def classifier_features(classifier: AttributeClassifier) -> Callable:
    """images [N, 3, 64, 64] in [-1, 1] -> the classifier trunk's output after each stride-2 stage."""
    stages = list(classifier.trunk)

    def feats(x):
        out = []
        for i, m in enumerate(stages):
            x = m(x)
            if i % 6 == 5:  # after each stage's stride-2 block
                out.append(x)
        return out
    return feats


def unit_channels(f: torch.Tensor) -> torch.Tensor:
    """Feature maps [N, C, H, W] unit-normalised over their channels at each position (LPIPS' form)."""
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)


def perceptual_features(classifier: AttributeClassifier, normalized: float = 0.02, raw: float = 0.05) -> Callable:
    """The mini world's LPIPS, for ``hairlib.invert`` (with ``feature_weight=1``): the classifier
    trunk's stage outputs unit-normalised over their channels and scaled by sqrt(C * normalized), so
    that a stage's mean squared error is ``normalized`` times the mean squared distance of those unit
    vectors (LPIPS' form), beside the raw outputs scaled by sqrt(raw), which keep the trunk's
    strongest responses (the eyes' colour)."""
    stages = classifier_features(classifier)

    def feats(x):
        out = []
        for f in stages(x):
            out += [unit_channels(f) * (f.shape[1] * normalized) ** 0.5, f * raw ** 0.5]
        return out
    return feats


RENDER_CHECK = {"seed": 4242, "n": 64, "margin_db": 1.0}  # calibration of render_aligner's threshold
MIN_RENDER_SIDE = 32  # px: smaller pictures cannot be told from anything else
MIN_RENDER_CONTRAST = 8.0  # std of the grey levels at 64 px: renders >= 15.7 (256 renders), a blank page ~0
# Fraction of pixels within 2 levels of their right and lower neighbours, at the picture's own size:
# renders are drawn in flat colours (>= 0.69 as 64 px PNGs, >= 0.34 as 64 px JPEGs at quality 90),
# photos are not (skimage's astronaut 0.19, coffee 0.20, cat 0.08).
MIN_RENDER_FLAT = 0.3


def flatness(image) -> float:
    """``MIN_RENDER_FLAT``'s measure of a PIL image."""
    a = np.asarray(image.convert("RGB"), dtype=np.int16)
    if min(a.shape[:2]) < 2:
        return 1.0
    right = np.abs(a[:-1, 1:] - a[:-1, :-1]).max(-1)
    down = np.abs(a[1:, :-1] - a[:-1, :-1]).max(-1)
    return float((np.maximum(right, down) <= 2).mean())


def render_aligner(generator: Generator, encoder: Encoder) -> Callable:
    """The mini world's ``World.aligner``: accepts what the world can represent, its own renders
    at any size (square, as renders are), and refuses the rest.

    A picture is taken for a render when it is square, at least ``MIN_RENDER_SIDE`` px, not blank
    (``MIN_RENDER_CONTRAST``), drawn in flat colours (``MIN_RENDER_FLAT``), and the encoder reconstructs it (G(E(x)) at 64 px) to within
    ``margin_db`` of the worst of ``n`` fresh renders (calibrated on first use, so it follows the
    shipped weights). Otherwise: a picture in which dlib (where installed) finds a face raises
    ``WrongWorldError`` (the mini world draws cartoons; ``--world ffhq`` edits photos); anything
    else ``NoFaceError``. Numbers measured on the shipped nets: renders >= 17.8 dB, skimage's
    photos (astronaut, coffee, cat, camera, ...) <= 16.1 dB."""
    size = generator.size
    state: Dict[str, float] = {}

    def reconstruction_db(images) -> torch.Tensor:
        """uint8 pictures [N, size, size, 3] -> dB of G(E(x)) against x."""
        x = R.to_tensor(images).to(generator.input.input.device)
        with torch.no_grad():
            y = generator.synthesis(encoder(x)).clamp(-1, 1)
        mse = (x - y).pow(2).flatten(1).mean(1) / 4  # images in [0, 1]
        return -10 * torch.log10(mse.clamp_min(1e-10))

    def threshold() -> float:
        if "db" not in state:
            ps = R.sample_params(RENDER_CHECK["seed"], n=RENDER_CHECK["n"], split=None)
            images = R.render_batch(ps, size=size)[0]
            state["db"] = float(reconstruction_db(images).min()) - RENDER_CHECK["margin_db"]
        return state["db"]

    def real_faces(image: Image.Image) -> int:
        try:
            return len(landmarks(image, min_score=0.3))
        except ImportError:  # no dlib: the message cannot tell a photo from any other picture
            return 0

    def aligner(image, face: Optional[int] = None):
        """A PIL image or uint8 array [H, W, 3] / [N, H, W, 3] -> itself, once each picture passed."""
        if face not in (None, 1):
            raise ValueError(f"a mini-world render holds one face; face {face} was asked for")
        arr = np.asarray(image) if not isinstance(image, Image.Image) else None
        if arr is not None and (arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[-1] != 3):
            return image  # not a picture: World.align says what it expects
        if arr is not None and arr.ndim == 4:
            for a in arr:
                check(Image.fromarray(np.ascontiguousarray(a)))
        else:
            check(image if arr is None else Image.fromarray(np.ascontiguousarray(arr)))
        return image

    def check(image: Image.Image) -> None:
        w, h = image.size
        small = (image.convert("RGB").resize((size, size), Image.BILINEAR) if min(w, h) >= MIN_RENDER_SIDE else None)
        contrast = float(np.asarray(small.convert("L"), dtype=np.float64).std()) if small is not None else 0.0
        db = math.nan
        if abs(w - h) > 0.02 * max(w, h):
            why = f"it is {w}x{h}, and renders are square"
        elif small is None:
            why = f"it is {w}x{h} px, and renders are at least {MIN_RENDER_SIDE} px"
        elif contrast < MIN_RENDER_CONTRAST:
            why = f"it is nearly blank (grey-level spread {contrast:.1f}; renders: >= {MIN_RENDER_CONTRAST:g})"
        elif (flat := flatness(image)) < MIN_RENDER_FLAT:
            why = (f"it is not drawn in flat colours as renders are ({flat:.0%} of its pixels match their neighbours; "
                   f"renders: >= {MIN_RENDER_FLAT:.0%})")
        else:
            db = float(reconstruction_db(np.asarray(small))[0])
            if db >= threshold():
                return
            why = f"the mini world reconstructs it to {db:.1f} dB, its renders to >= {threshold():.1f} dB"
        faces = real_faces(image) if min(w, h) >= MIN_RENDER_SIDE else 0
        if faces:
            raise WrongWorldError(
                f"not a mini-world render ({why}), and dlib finds {faces} face{'s' if faces > 1 else ''} in it: if it "
                f"is a photo, the mini world draws cartoon faces and edits only its own renders; edit photos with "
                f"--world ffhq (a GPU helps). `hairlib demo` writes mini-world renders to try")
        raise NoFaceError(f"no mini-world face found: {why}. The mini world edits its own renders (square, any size "
                          f"from {MIN_RENDER_SIDE} px; `hairlib demo` writes some); photos of people: --world ffhq")
    return aligner


def shipped_mappers(wdir: Path) -> Dict[str, Any]:
    """The trained mappers shipped beside a world's weights: StyleCLIP mappers in ``mappers/``
    (prompt slug -> file), HairCLIP's ``hairclip.safetensors`` and ManiCLIP's
    ``maniclip.safetensors`` (None when absent)."""
    hairclip, maniclip = wdir / "hairclip.safetensors", wdir / "maniclip.safetensors"
    return {"mappers": {p.stem: p for p in sorted((wdir / "mappers").glob("*.safetensors"))},
            "hairclip_mapper": hairclip if hairclip.exists() else None,
            "maniclip_editor": maniclip if maniclip.exists() else None}


def maniclip_sentences(rng: np.random.Generator, k: int = 3, decouple: bool = True) -> Tuple[str, Dict[str, int]]:
    """ManiCLIP's training text in the mini world -> (sentence, labels). ``decouple``:
    group sampling over the renderer's attribute groups (``captions.group_sampled_sentence``, the
    authors' ``PartTextDataset``); else a whole caption of a random face (their ``TextDataset``:
    captions of CelebA faces). The labels: those the sentence states (group sampling), the face's (captions)."""
    if decouple:
        return captions.group_sampled_sentence(rng, k=k, split="train")
    params = R.sample_params(rng, split="train")
    return captions.caption(params, rng, split="train"), params.labels()


def load_mini(device="cpu", weights_dir_: Optional[Path] = None) -> Dict[str, Any]:
    """Every shipped network of the mini world, as the keyword arguments of a ``World``."""
    wdir = weights_dir(weights_dir_)
    missing = [n for n in REQUIRED if not (wdir / f"{n}.safetensors").exists()]
    if missing:
        raise FileNotFoundError(
            f"the mini world is incomplete: {', '.join(missing)} missing in {wdir}. Each is made by "
            f"its recipe (hairlib/mini/README.md); a released hairlib ships them all.")
    classifier = load_classifier(wdir, device)
    generator, encoder = load_generator(wdir, device), load_encoder(wdir, device)
    masks = None
    if (wdir / "parser.safetensors").exists():
        parser = load_parser(wdir, device)
        masks = parser.masks
    return dict(
        name="mini",
        generator=generator,
        clip=load_clip_net(wdir, device),
        identity=load_identity(wdir, device),
        classifier=classifier,
        encoder=encoder,
        aligner=render_aligner(generator, encoder),
        feature_net=perceptual_features(classifier),
        invert_config=INVERT,
        vocab={"hair_colors": vocab.HAIR_COLORS, "hairstyles": vocab.HAIRSTYLES, "attributes": dict(vocab.ATTRIBUTES),
               "groups": dict(vocab.GROUPS)},
        masks=masks,
        references=render_references,
        sentences=maniclip_sentences,
        **shipped_mappers(wdir),
    )
