"""The mini world at run time: the shipped networks in ``hairlib/mini/weights/``, loaded.

Each network is ``<name>.safetensors`` (its state dict) beside ``<name>.json`` (the config that
rebuilds it, its recipe and lineage, its measured quality). This module reads them; recipes
(``hairlib.mini.build`` and the ``train_*`` modules) write them. Nothing here imports a recipe.

    from hairlib.mini.world import load_generator, load_mini
    G = load_generator()          # the shipped StyleGAN2, eval mode, frozen
    world = load_mini("cpu")      # every shipped net wired into a World
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from safetensors.torch import load_file
from torch import nn

from hairlib.invert import InvertConfig
from hairlib.mini import vocab
from hairlib.mini.data import render_references
from hairlib.nets.clip import CLIP, load_clip
from hairlib.nets.loading import load_state_dict_strict
from hairlib.nets.mini_nets import (AttributeClassifier, ClassifierConfig, Encoder, EncoderConfig, IdentityConfig,
                                    IdentityNet, MiniParser, ParserConfig)
from hairlib.nets.stylegan2 import Generator, StyleGAN2Config

__all__ = ["WEIGHTS_DIR", "REQUIRED", "INVERT", "load_net", "load_generator", "load_clip_net", "load_identity",
           "load_classifier", "load_encoder", "load_parser", "classifier_features", "perceptual_features",
           "weights_dir", "shipped_mappers"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
REQUIRED = ("stylegan2", "clip", "identity", "classifier", "encoder")  # the parser and mappers are optional

# Inversion after the encoder (World.invert_config), with ``perceptual_features``: 200 Adam steps
# at lr 0.1 (ramped), pixels + features. On 200 held-out renders: 25.2 dB, every label kept on 95 %.
INVERT = InvertConfig(steps=200, lr=0.1, lr_schedule="ramp", feature_weight=1.0)


def weights_dir(path=None) -> Path:
    """``path``, else ``$HAIRLIB_MINI_WEIGHTS``, else the package's ``weights/``."""
    return Path(path or os.environ.get("HAIRLIB_MINI_WEIGHTS") or WEIGHTS_DIR)


def load_net(name: str, build: Callable[[Dict[str, Any]], nn.Module], dest: Path = WEIGHTS_DIR,
             device="cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild ``name`` with ``build(meta)`` and load its weights strictly; eval mode, frozen."""
    dest = Path(dest)
    path = dest / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"mini-world weights {path} are missing; rebuild them with "
                                f"`python -m hairlib.mini.build {name}` or reinstall hairlib")
    meta = json.loads((dest / f"{name}.json").read_text())
    model = build(meta)
    load_state_dict_strict(model, load_file(str(path)), what=str(path))
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
            unit = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            out += [unit * (f.shape[1] * normalized) ** 0.5, f * raw ** 0.5]
        return out
    return feats


def shipped_mappers(wdir: Path) -> Dict[str, Any]:
    """The trained mappers shipped beside a world's weights: StyleCLIP mappers in ``mappers/``
    (prompt slug -> file) and HairCLIP's ``hairclip.safetensors`` (None when absent)."""
    hairclip = wdir / "hairclip.safetensors"
    return {"mappers": {p.stem: p for p in sorted((wdir / "mappers").glob("*.safetensors"))},
            "hairclip_mapper": hairclip if hairclip.exists() else None}


def load_mini(device="cpu", weights_dir_: Optional[Path] = None) -> Dict[str, Any]:
    """Every shipped network of the mini world, as the keyword arguments of a ``World``."""
    wdir = weights_dir(weights_dir_)
    missing = [n for n in REQUIRED if not (wdir / f"{n}.safetensors").exists()]
    if missing:
        raise FileNotFoundError(
            f"the mini world is incomplete: {', '.join(missing)} missing in {wdir}. Each is made by "
            f"`python -m hairlib.mini.build NAME` (see hairlib/mini/README.md); a released hairlib ships them all.")
    classifier = load_classifier(wdir, device)
    masks = None
    if (wdir / "parser.safetensors").exists():
        parser = load_parser(wdir, device)
        masks = parser.masks
    return dict(
        name="mini",
        generator=load_generator(wdir, device),
        clip=load_clip_net(wdir, device),
        identity=load_identity(wdir, device),
        classifier=classifier,
        encoder=load_encoder(wdir, device),
        feature_net=perceptual_features(classifier),
        invert_config=INVERT,
        vocab={"hair_colors": vocab.HAIR_COLORS, "hairstyles": vocab.HAIRSTYLES, "attributes": dict(vocab.ATTRIBUTES),
               "groups": dict(vocab.GROUPS)},
        masks=masks,
        references=render_references,
        **shipped_mappers(wdir),
    )
