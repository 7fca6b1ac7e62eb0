"""Worlds: everything an edit needs, loaded once and passed around.

A ``World`` bundles a generator, CLIP, an identity network, an attribute classifier, an
encoder + optimisation inversion and a vocabulary (DESIGN.md, "Two worlds, one code path").

    world = hairlib.load_world("mini")             # shipped, offline, CPU
    w = world.sample(n=4, seed=0, truncation=0.7)  # W+ [4, num_ws, style_dim]
    x = world.generate(w)                          # [4, 3, 64, 64] in [-1, 1]
    w_real = world.invert(world.align(image))      # an image -> W+

Two worlds share the class: ``mini`` (the shipped networks, ``hairlib.mini.world``) and ``ffhq``
(the papers' models, fetched once into the cache by ``hairlib.weights``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hairlib import ops, prompts, weights
from hairlib.align import MultipleFacesWarning, align_with_info
from hairlib.images import read_image
from hairlib.invert import InversionResult, InvertConfig, invert
from hairlib.methods.settings import MINI, PAPER, Settings
from hairlib.mini.world import load_mini
from hairlib.nets.clip import load_clip
from hairlib.nets.e4e import load_e4e
from hairlib.nets.identity import load_arcface
from hairlib.nets.parser import FaceParser, load_parser
from hairlib.nets.stylegan2 import load_generator

__all__ = ["World", "load_world"]


@dataclass
class World:
    name: str  # "mini" or "ffhq"
    generator: nn.Module  # hairlib.nets.stylegan2.Generator, frozen
    clip: Any  # hairlib.nets.clip.CLIP, frozen
    identity: nn.Module  # images -> unit-norm identity embeddings
    classifier: Optional[nn.Module] = None  # images -> {label: logits} (evaluation)
    encoder: Optional[nn.Module] = None  # images -> W+ (inversion's start)
    feature_net: Optional[Callable] = None  # perceptual features for inversion
    invert_config: InvertConfig = field(default_factory=InvertConfig)
    vocab: Dict[str, Any] = field(default_factory=dict)  # hair colours, hairstyles, attributes
    settings: Settings = PAPER  # every method's settings in this world (hairlib.methods.settings)
    mappers: Dict[str, Path] = field(default_factory=dict)  # StyleCLIP mapper files: prompt slug -> path
    hairclip_mapper: Optional[Path] = None  # a HairCLIP mapper file
    maniclip_editor: Optional[Path] = None  # a ManiCLIP editor file
    sentences: Optional[Callable] = None  # (rng, k, decouple) -> (sentence, labels): ManiCLIP's training text
    references: Optional[Callable] = None  # (kind, values, rng) -> HairCLIP reference images, hair masks
    masks: Optional[Callable] = None  # images -> {"hair", "face", "background": [N, 1, H, W] in {0, 1}}
    aligner: Optional[Callable] = None  # photo -> aligned PIL image (ffhq: dlib FFHQ alignment)

    def __repr__(self) -> str:
        """A summary a person can read (the dataclass's own repr prints every layer of every net)."""
        def size(m) -> str:
            n = sum(p.numel() for p in m.parameters()) if isinstance(m, nn.Module) else None
            return "present" if n is None else f"{n / 1e6:.2f} M parameters"

        G = self.generator
        parts = [("generator", f"StyleGAN2, {G.size} px, W+ [{G.num_ws}, {G.style_dim}], {size(G)}"),
                 ("clip", f"embedding {getattr(self.clip, 'embed_dim', '?')}, {size(self.clip)}"),
                 ("identity", size(self.identity))]
        parts += [(name, size(net)) for name, net in (("classifier", self.classifier), ("encoder", self.encoder))
                  if net is not None]
        parts += [(name, "present") for name, f in (("masks", self.masks), ("aligner", self.aligner)) if f is not None]
        mappers = sorted(self.mappers)
        parts.append(("mappers", ", ".join(mappers) if mappers else "none here (train one, or fetch the authors')"))
        parts.append(("settings", self.settings.name))
        parts.append(("hairclip", "shipped mapper" if self.hairclip_mapper is not None
                      else "no mapper here (train one, or fetch the authors')"))
        parts.append(("maniclip", "shipped editor" if self.maniclip_editor is not None
                      else "no editor here (train one, or give the authors' with editor=)"))
        width = max(len(k) for k, _ in parts)
        return "\n".join([f"World({self.name!r}, device {self.device})"] + [f"  {k:<{width}}  {v}" for k, v in parts])

    @property
    def device(self) -> torch.device:
        return self.generator.input.input.device

    @property
    def resolution(self) -> int:
        return self.generator.size

    def sample(self, n: int = 4, seed: Optional[int] = None, truncation: float = 0.7) -> torch.Tensor:
        """Random W+ latents [n, num_ws, style_dim] (truncated toward the mean latent)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.generator.style_dim, generator=gen).to(self.device)
        with torch.no_grad():
            return self.generator.to_wplus(z, "z", truncation=truncation)

    def generate(self, wplus: torch.Tensor, noise_mode: str = "const", fast: bool = False) -> torch.Tensor:
        """W+ -> images [N, 3, R, R] in [-1, 1] (differentiable). ``fast``: the training execution
        for networks trained through this frozen generator (the edit networks): on a CPU with
        AMX-BF16 the synthesis runs under bf16 autocast, channels-last (``ops.training_dtype``),
        and returns fp32 images, so every loss after it stays fp32; elsewhere it changes nothing."""
        if not fast:
            return self.generator.synthesis(wplus.to(self.device), noise_mode=noise_mode)
        with ops.frozen_autocast(self.device):
            x = self.generator.synthesis(wplus.to(self.device), noise_mode=noise_mode)
        return x.float().contiguous()  # the same tensor where no autocast ran

    def align(self, image, face: Optional[int] = None) -> torch.Tensor:
        """An image (path, PIL image, uint8 [H, W, 3] or [N, H, W, 3], or a tensor in [-1, 1]) ->
        [N, 3, R, R] in [-1, 1]. The mini world's renders are already aligned: only resized. The
        ffhq world aligns photos as FFHQ was (dlib landmarks); the mini world refuses what is not
        one of its renders (``hairlib.mini.world.render_aligner``). Files are read upright, in 8-bit
        RGB (``hairlib.images.read_image``); tensors are taken as aligned. ``face``: which face of a
        photo with several (1 = the largest, the default; a ``MultipleFacesWarning`` says which
        was taken when there are more)."""
        if face is not None and (isinstance(face, bool) or not isinstance(face, int) or face < 1):
            raise ValueError(f"face must be 1 (the largest face) or more, got {face!r}")
        name = str(image) if isinstance(image, (str, Path)) else None
        if isinstance(image, (str, Path)):
            image = read_image(image)
        if self.aligner is not None and not isinstance(image, torch.Tensor):
            try:
                image = self.aligner(image, face=face)
            except ValueError as e:
                raise type(e)(f"{name}: {e}" if name else str(e)) from None
        if not isinstance(image, torch.Tensor):
            arr = np.asarray(image)
            if arr.ndim == 3:
                arr = arr[None]
            if arr.dtype != np.uint8 or arr.shape[-1] != 3:
                raise ValueError(f"expected RGB uint8 images [H, W, 3], got {arr.dtype} {arr.shape}")
            image = torch.from_numpy(np.array(arr, copy=True)).permute(0, 3, 1, 2).float() / 127.5 - 1
        x = image if image.ndim == 4 else image[None]
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True,
                              align_corners=False)
        return x.to(self.device).clamp(-1, 1)

    def invert(self, images: torch.Tensor, steps: Optional[int] = None, *, full: bool = False,
               progress: bool = False):
        """Images [N, 3, R, R] in [-1, 1] -> W+ (or the whole ``InversionResult`` with ``full``)."""
        cfg = self.invert_config if steps is None else InvertConfig(**{**self.invert_config.__dict__, "steps": steps})
        res: InversionResult = invert(self.generator, images.to(self.device), encoder=self.encoder, cfg=cfg,
                                      feature_net=self.feature_net, progress=progress)
        return res if full else res.wplus

    def identity_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [N] of the identities in two image batches."""
        with torch.no_grad():
            return (self.identity(a) * self.identity(b)).sum(1)


def _load_mini(device, weights_dir: Optional[Path] = None) -> World:
    return World(**load_mini(device, weights_dir), settings=MINI)


FFHQ_WEIGHTS = {1024: ("stylegan2-ffhq-1024", "clip-vit-b32", "e4e-ffhq", "arcface-ir-se50", "face-parser"),
                256: ("stylegan2-ffhq-256", "clip-vit-b32", "arcface-ir-se50", "face-parser")}


def _ffhq_files(resolution: int, download: Optional[bool]) -> Dict[str, Path]:
    """Paths of the ffhq world's checkpoints, fetched when missing (unless offline). Raises one
    WeightsMissingError naming every file still missing and the ``hairlib fetch`` commands."""
    if resolution not in FFHQ_WEIGHTS:
        raise ValueError(f"the ffhq world comes at 1024 px (StyleCLIP, HairCLIP) or 256 px (ManiCLIP), not {resolution}")
    names = FFHQ_WEIGHTS[resolution]
    missing = [n for n in names if not weights.is_present(n)]
    if download is None:
        download = not weights._offline()
    if missing and download:
        failed = []
        for n in missing:
            try:
                weights.fetch(n)
            except weights.WeightsMissingError:
                failed.append(n)
        missing = failed
    paths = weights.require(*names)  # raises, naming all that are missing
    return dict(zip(names, paths))


class _LpipsFeatures:
    """LPIPS (VGG) as a feature function for ``invert``: each layer's unit-normalised activations
    times sqrt(C * w_c) (w_c: LPIPS' learned 1x1 weights), so that the sum over layers of the
    features' mean squared error equals the LPIPS distance."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        m = self.model
        feats = m.net.forward(m.scaling_layer(x))
        out = []
        for k, f in enumerate(feats):
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            w = m.lins[k].model[-1].weight.clamp_min(0).sqrt()  # 1x1 conv weights of LPIPS' linear layers
            out.append(f * w.view(1, -1, 1, 1) * f.shape[1] ** 0.5)
        return out


def _lpips_features(device):
    """LPIPS features when the package and its backbone weights are at hand (Colab), else None."""
    try:
        import lpips  # noqa: F401

        vgg = Path(torch.hub.get_dir()) / "checkpoints" / "vgg16-397923af.pth"  # torchvision's VGG16
        if weights._offline() and not vgg.exists():
            return None  # offline: no download attempt
        model = lpips.LPIPS(net="vgg", verbose=False).to(device).eval().requires_grad_(False)
        return _LpipsFeatures(model)
    except Exception:
        return None


def _load_ffhq(device, resolution: int = 1024, download: Optional[bool] = None) -> World:
    files = _ffhq_files(resolution, download)  # first: fail fast, naming every missing file

    G = load_generator(files[FFHQ_WEIGHTS[resolution][0]]).to(device).eval().requires_grad_(False)
    encoder = None
    if resolution == 1024:
        encoder = load_e4e(files["e4e-ffhq"], device, with_generator=False)
    arcface = load_arcface(files["arcface-ir-se50"], device)
    parser = FaceParser(load_parser(files["face-parser"], device))

    def aligner(image, face: Optional[int] = None):
        a = align_with_info(image, size=resolution, faces=(face or 1) - 1)
        if a.faces_found > 1:
            x, y, w, h = a.box
            warnings.warn(MultipleFacesWarning(
                f"{a.faces_found} faces found; editing face {face or 1} ({'the largest, ' if not face or face == 1 else ''}"
                f"{w}x{h} px at ({x}, {y})); --face N (face=N in Python) picks another, 1 being the largest"),
                stacklevel=3)
        return a.image

    feature_net = _lpips_features(device)
    return World(
        name="ffhq",
        generator=G,
        clip=load_clip(files["clip-vit-b32"], device, label="ViT-B/32"),
        identity=arcface.embed,
        classifier=None,  # no CelebA attribute classifier is published with the papers' code
        encoder=encoder,
        feature_net=feature_net,
        invert_config=InvertConfig(steps=100 if encoder is not None else 500, lr=0.01 if encoder is not None else 0.05,
                                   feature_weight=1.0 if feature_net is not None else 0.0, latent_weight=0.0),
        vocab={"hair_colors": prompts.HAIRCLIP_COLORS, "hairstyles": prompts.HAIRCLIP_HAIRSTYLES},
        settings=PAPER,
        masks=parser.masks,
        aligner=aligner,
    )


def load_world(name: str = "mini", device="cpu", **kw) -> World:
    """``"mini"`` (shipped, offline) or ``"ffhq"`` (the papers' models: ``resolution=1024`` for
    StyleCLIP and HairCLIP, ``256`` for ManiCLIP; fetched into the cache on first use, unless
    offline, when a missing file raises ``WeightsMissingError`` naming it and ``hairlib fetch``)."""
    if name == "mini":
        return _load_mini(torch.device(device), **kw)
    if name == "ffhq":
        return _load_ffhq(torch.device(device), **kw)
    raise ValueError(f"unknown world {name!r}: choose 'mini' or 'ffhq'")
