"""CLIP (Radford et al., ICML 2021) as StyleCLIP, HairCLIP and ManiCLIP use it: a frozen encoder
of generator images and prompts, plus the CLIP losses.

The networks are open_clip's (``open_clip_torch``); this module only loads them and wraps them
with the input contract of hairlib (images in [-1, 1] straight from the generator). It
reproduces StyleCLIP's ``criteria/clip_loss.py`` (``1 - logit / 100``, images resized by
nearest upsampling x7 then average pooling) and its prompt engineering for global directions
(text embeddings averaged over 79 of CLIP's 80 ImageNet templates), and adds StyleGAN-NADA's
directional CLIP loss (Gal et al. 2022).

Where it differs from the authors' code:
  * ``encode_image`` maps images to [0, 1] and normalises them with CLIP's mean/std unless
    ``clip_input="raw"``, the authors' path (StyleCLIP and HairCLIP feed the [-1, 1] image
    unnormalised; ``hairlib.methods.settings.PAPER`` selects it);
  * the x7-upsample + AvgPool resize is computed as two small matrix products (same numbers
    up to float rounding), not through a 7x larger image (7168 x 7168 at 1024 px);
  * sizes where ``H * 7`` is not a multiple of CLIP's input size use antialiased bilinear
    interpolation instead of failing;
  * weights stay in the dtype asked for (fp32 by default, on GPU too); OpenAI's ``clip.load``
    returns fp16 on GPU. Embeddings are always returned in fp32;
  * OpenAI checkpoints are read with ``torch.load(weights_only=True)`` or, for OpenAI's original
    TorchScript archive, ``torch.jit.load`` whose state dict alone is kept; every load is strict
    and names the keys that do not fit.

Shapes: images [N, 3, H, W] in [-1, 1]; embeddings [N, D] with unit L2 norm (D = 512 for
ViT-B/32); losses [N].
"""
from __future__ import annotations

import functools
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hairlib.nets import mini_towers
from hairlib.nets.loading import load_safetensors, load_state_dict_strict
from hairlib.prompts import IMAGENET_TEMPLATES, STYLECLIP_TEMPLATES

__all__ = ["CLIP", "IMAGENET_TEMPLATES", "OPENAI_MEAN", "OPENAI_STD", "OPENAI_MODELS", "load_clip", "build_model",
           "clip_loss", "directional_clip_loss", "resize_for_clip"]

CLIP_INPUTS = ("normalized", "raw")  # how generator images enter CLIP (CLIP.encode_image)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's per-channel pixel mean (RGB, [0, 1] scale)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)  # CLIP's per-channel pixel std
STYLECLIP_UPSAMPLE = 7  # StyleCLIP upsamples by 7 (nearest), then average-pools down to 224 px
TEXT_CACHE_SIZE = 4096  # embeddings kept by CLIP.encode_text before the oldest are dropped
TEXT_BATCH = 512  # sentences per text-encoder call
OPENAI_MODELS = {"ViT-B/32": "clip-vit-b32"}  # OpenAI model name -> hairlib.weights registry name
# ints in OpenAI's archive, and open_clip's causal mask (a non-persistent buffer that a
# TorchScript archive of an open_clip model keeps in its state dict): not weights
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")

TemplatesArg = Union[None, str, Sequence[str]]


def _open_clip():
    """open_clip, imported on first use (it pulls in torchvision: seconds, not needed at import)."""
    import open_clip
    return open_clip


@functools.lru_cache(maxsize=8)
def _bpe_tokenizer(context_length: int):
    """CLIP's byte-pair tokenizer (49 408 tokens, <start_of_text> 49406, <end_of_text> 49407)."""
    return _open_clip().tokenizer.SimpleTokenizer(context_length=context_length)


# ----------------------------------------------------------------------------------------------
# Images


def _pool_matrix(size_in: int, size_out: int, kernel: int, device, dtype) -> Tensor:
    """[size_out, size_in] matrix equal to nearest upsampling x7 followed by average pooling
    with ``kernel`` along one axis (``size_in * 7 == size_out * kernel``)."""
    pos = torch.arange(size_in * STYLECLIP_UPSAMPLE, device=device)  # positions in the upsampled axis
    mat = torch.zeros(size_out, size_in, device=device, dtype=dtype)
    ones = torch.full(pos.shape, 1.0 / kernel, device=device, dtype=dtype)
    return mat.index_put_((pos // kernel, pos // STYLECLIP_UPSAMPLE), ones, accumulate=True)


def resize_for_clip(images: Tensor, size: int) -> Tensor:
    """Resize images to CLIP's input size the way StyleCLIP does.

    images: [N, C, H, W], any range (the map is linear). Returns [N, C, size, size].
    When ``H * 7`` and ``W * 7`` are multiples of ``size`` (1024, 256 and 64 px -> 224), the
    result equals ``AvgPool2d(H * 7 // size)(Upsample(scale_factor=7)(images))`` (StyleCLIP's
    ``criteria/clip_loss.py``), computed without the 7x larger intermediate image. Otherwise
    antialiased bilinear interpolation. Differentiable.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h == size and w == size:
        return images
    if (h * STYLECLIP_UPSAMPLE) % size or (w * STYLECLIP_UPSAMPLE) % size:
        return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    dtype = images.dtype if images.is_floating_point() else torch.float32
    rows = _pool_matrix(h, size, h * STYLECLIP_UPSAMPLE // size, images.device, dtype)  # [S, H]
    cols = _pool_matrix(w, size, w * STYLECLIP_UPSAMPLE // size, images.device, dtype)  # [S, W]
    return rows @ images.to(dtype) @ cols.T  # [N, C, S, S]


def _photo_to_tensor(image: Any, crop: bool) -> Tensor:
    """PIL image or uint8 array [H, W], [H, W, 3] or [H, W, 4] -> [1, 3, h, w] in [-1, 1],
    centre-cropped to a square when ``crop``."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"photos must be PIL images or uint8 arrays, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"a photo array must be [H, W], [H, W, 3] or [H, W, 4], got {array.shape}")
    x = torch.from_numpy(np.array(array[:, :, :3])).permute(2, 0, 1)[None].float()
    if crop:
        h, w = x.shape[-2:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = x[:, :, top:top + side, left:left + side]
    return x / 127.5 - 1.0


def _as_photo_list(images: Any) -> list:
    """One photo, a batch array [N, H, W, 3], or a sequence of photos -> list of photos."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


# ----------------------------------------------------------------------------------------------
# The wrapper


def _clear_cache_after_load(module: "CLIP", incompatible_keys) -> None:
    module.clear_cache()


class CLIP(nn.Module):
    """A frozen open_clip model with hairlib's input contract and a text-embedding cache.

    Attributes: ``model`` (the open_clip model), ``tokenizer`` (CLIP's BPE tokenizer, strings ->
    [N, context_length] int64), ``image_size`` (side of the encoder's square input, 224 for
    ViT-B/32), ``mean``/``std`` ([1, 3, 1, 1] buffers, not saved in the state dict),
    ``embed_dim`` (D), ``dtype`` (of the weights), ``device``, ``name``.

    The wrapper is frozen: parameters have ``requires_grad=False`` and ``train()`` keeps it in
    eval mode. Gradients still flow to the input images of ``encode_image``.
    """

    def __init__(self, model: nn.Module, tokenizer, *, name: str = "clip",
                 mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD):
        super().__init__()
        self._text_cache: Dict[Tuple[str, Optional[Tuple[str, ...]]], Tensor] = {}
        self.model = model  # open_clip CLIP / CustomTextCLIP
        self.tokenizer = tokenizer  # callable: str | list[str] -> [N, context_length] int64
        self.name = name  # label for reprs and logs
        size = getattr(model.visual, "image_size", None)
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size[0] != size[1]:
            raise ValueError(f"only square CLIP inputs are supported, got {size}")
        self.image_size = int(size[0])
        out_dim = getattr(model.visual, "output_dim", None)  # open_clip's own towers; a timm trunk has none
        self.embed_dim = int(out_dim if out_dim is not None else model.text_projection.shape[-1])
        device = next(model.parameters()).device
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.train(False)
        self.register_load_state_dict_post_hook(_clear_cache_after_load)

    # -- housekeeping --------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """dtype of the weights (fp32 unless asked otherwise); embeddings are always fp32."""
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def train(self, mode: bool = True) -> "CLIP":
        """Frozen: stays in eval mode whatever ``mode`` a parent module passes."""
        return super().train(False)

    def _apply(self, fn, recurse: bool = True):
        self.clear_cache()  # .to(device / dtype) invalidates cached text embeddings
        return super()._apply(fn, recurse)

    def clear_cache(self) -> None:
        """Forget the cached text embeddings."""
        self._text_cache.clear()

    def __repr__(self) -> str:
        return (f"CLIP(name={self.name!r}, image_size={self.image_size}, embed_dim={self.embed_dim}, "
                f"dtype={self.dtype}, device={self.device})")

    # -- text ----------------------------------------------------------------------------------
    @staticmethod
    def _templates(templates: TemplatesArg) -> Optional[Tuple[str, ...]]:
        if templates is None:
            return None
        if isinstance(templates, str):
            if templates.lower() == "imagenet":
                return IMAGENET_TEMPLATES
            if templates.lower() == "styleclip":
                return STYLECLIP_TEMPLATES
            templates = (templates,)
        templates = tuple(templates)
        bad = [t for t in templates if "{}" not in t]
        if not templates or bad:
            raise ValueError("templates must be None, 'imagenet', 'styleclip' or sentences holding '{}' for the prompt; "
                             f"got {bad[:3] if bad else 'an empty list'}")
        return templates

    def _encode_sentences(self, sentences: Sequence[str]) -> Tensor:
        """[len(sentences), D] fp32, unit norm."""
        out = []
        for i in range(0, len(sentences), TEXT_BATCH):
            tokens = self.tokenizer(list(sentences[i:i + TEXT_BATCH])).to(self.device)  # [B, L]
            out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        return torch.cat(out)

    @torch.no_grad()
    def encode_text(self, prompts: Union[str, Sequence[str]], templates: TemplatesArg = None, *,
                    cache: bool = True) -> Tensor:
        """Embed prompts. Returns [N, D] fp32 with unit L2 norm (no gradient).

        prompts: a string or N strings. templates: None (embed each prompt as written),
        ``"imagenet"`` (CLIP's 80 ImageNet templates), ``"styleclip"`` (the 79 of them StyleCLIP uses), or
        sentences with ``{}`` where the prompt goes. With templates, a prompt's embedding is the
        normalised mean of its templated sentences' normalised embeddings. Results are cached
        per (prompt, templates); ``clear_cache()`` forgets them; ``cache=False`` neither reads nor
        fills the cache (the weights as they are now, e.g. for a fingerprint of them). Text longer
        than the context length is truncated by the tokenizer, as in CLIP.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        tmpl = self._templates(templates)
        if not prompts:
            return torch.zeros(0, self.embed_dim, device=self.device)
        found = {p: self._text_cache[(p, tmpl)] for p in prompts if cache and (p, tmpl) in self._text_cache}
        todo = [p for p in dict.fromkeys(prompts) if p not in found]
        if todo:
            if tmpl is None:
                new = self._encode_sentences(todo)  # [P, D]
            else:
                sent = self._encode_sentences([t.format(p) for p in todo for t in tmpl])  # [P * T, D]
                new = F.normalize(sent.view(len(todo), len(tmpl), -1).mean(dim=1), dim=-1)  # [P, D]
            for p, e in zip(todo, new):
                found[p] = e
                if not cache:
                    continue
                if len(self._text_cache) >= TEXT_CACHE_SIZE:
                    self._text_cache.pop(next(iter(self._text_cache)))  # drop the oldest
                self._text_cache[(p, tmpl)] = e
        return torch.stack([found[p] for p in prompts])

    # -- images --------------------------------------------------------------------------------
    def normalize(self, images: Tensor) -> Tensor:
        """[N, 3, S, S] in [-1, 1] -> CLIP's input: (x + 1) / 2, then (x - mean) / std, in ``dtype``."""
        x = (images.to(self.mean.dtype) + 1) / 2
        return ((x - self.mean) / self.std).to(self.dtype)

    def encode_image(self, images: Tensor, clip_input: str = "normalized") -> Tensor:
        """Embed generator images. images: [N, 3, H, W] in [-1, 1]. Returns [N, D] fp32, unit norm.

        Resized to ``image_size`` with ``resize_for_clip`` (StyleCLIP's x7 nearest upsample +
        AvgPool(H * 7 // image_size), e.g. 1024/256/64 -> 224; bilinear with antialias for
        other sizes). ``clip_input="normalized"``: mapped to [0, 1] and normalised with CLIP's
        mean/std, as CLIP was trained; ``"raw"``: the [-1, 1] image as it is, as StyleCLIP's and
        HairCLIP's losses feed it. Differentiable with respect to ``images``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        if clip_input not in CLIP_INPUTS:
            raise ValueError(f"clip_input must be one of {CLIP_INPUTS}, not {clip_input!r}")
        x = resize_for_clip(images.to(self.device), self.image_size)
        x = self.normalize(x) if clip_input == "normalized" else x.to(self.dtype)
        return F.normalize(self.model.encode_image(x).float(), dim=-1)

    # -- unnormalised embeddings (HairCLIP's conditions) -----------------------------------------
    @torch.no_grad()
    def embed_text_raw(self, prompts: Union[str, Sequence[str]]) -> Tensor:
        """CLIP's text features as ``model.encode_text`` returns them (no L2 norm, no templates):
        what HairCLIP feeds its mapper. [N, D] fp32."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return self.model.encode_text(self.tokenizer(prompts).to(self.device)).float()

    def embed_image_raw(self, images: Tensor) -> Tensor:
        """HairCLIP's image features: AdaptiveAvgPool2d to CLIP's input size (not StyleCLIP's x7
        upsampling), [-1, 1] -> [0, 1], CLIP normalisation, ``encode_image``, no L2 norm. [N, D]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        x = F.adaptive_avg_pool2d(images.to(self.device, torch.float32), (self.image_size, self.image_size))
        return self.model.encode_image(self.normalize(x)).float()

    def preprocess(self, images: Any, *, crop: bool = True) -> Tensor:
        """Photos -> the image encoder's input [N, 3, image_size, image_size] (normalised, ``dtype``).

        images: a PIL image, a uint8 array [H, W, 3] / [N, H, W, 3], or a list of them. Each is
        centre-cropped to a square (``crop``), scaled to [-1, 1] and then goes the same way as a
        generator image (``resize_for_clip``, mean/std), so photos and renders are compared alike.
        """
        xs = [resize_for_clip(_photo_to_tensor(im, crop).to(self.device), self.image_size)
              for im in _as_photo_list(images)]
        return self.normalize(torch.cat(xs))

    @torch.no_grad()
    def encode_pil(self, images: Any, *, crop: bool = True) -> Tensor:
        """Embed reference photos (see ``preprocess`` for the inputs). Returns [N, D] fp32, unit norm."""
        return F.normalize(self.model.encode_image(self.preprocess(images, crop=crop)).float(), dim=-1)


# ----------------------------------------------------------------------------------------------
# Losses


def clip_loss(clip: CLIP, images: Tensor, text_emb: Tensor, clip_input: str = "normalized") -> Tensor:
    """StyleCLIP's CLIP loss, 1 - cos(E_I(image), text_emb) (= 1 - logit / 100 for ViT-B/32).

    images: [N, 3, H, W] in [-1, 1]; text_emb: [N, D] or [1, D] (broadcast), e.g. from
    ``clip.encode_text``; normalised here. ``clip_input``: see ``CLIP.encode_image`` (StyleCLIP's
    own loss is ``"raw"``). Returns [N] in [0, 2]; differentiable in ``images``.
    """
    img = clip.encode_image(images, clip_input)  # [N, D]
    txt = F.normalize(text_emb.to(img.device, torch.float32).reshape(-1, img.shape[-1]), dim=-1)
    return 1 - (img * txt).sum(dim=-1)


def directional_clip_loss(clip: CLIP, src_images: Tensor, edit_images: Tensor,
                          src_text_emb: Tensor, tgt_text_emb: Tensor) -> Tensor:
    """StyleGAN-NADA's directional CLIP loss, 1 - cos(E_I(edit) - E_I(src), E_T(tgt) - E_T(src)).

    src_images, edit_images: [N, 3, H, W] in [-1, 1]; src_text_emb, tgt_text_emb: [N, D] or
    [1, D] unit embeddings. Returns [N] in [0, 2]; 0 when the image change points along the
    text change. An unchanged image (zero image direction) scores 1. Differentiable in both
    image batches.
    """
    img_dir = clip.encode_image(edit_images) - clip.encode_image(src_images)  # [N, D]
    txt_dir = (tgt_text_emb.to(img_dir.device, torch.float32) - src_text_emb.to(img_dir.device, torch.float32))
    txt_dir = txt_dir.reshape(-1, img_dir.shape[-1])
    return 1 - F.cosine_similarity(img_dir, txt_dir.expand_as(img_dir), dim=-1, eps=1e-8)


# ----------------------------------------------------------------------------------------------
# Loading


def _is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (OpenAI's original ViT-B-32.pt), False for ``torch.save`` files."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in n or n.endswith("/constants.pkl") for n in zf.namelist())


def _read_state_dict(source: Union[str, os.PathLike, Mapping[str, Tensor]]) -> Dict[str, Tensor]:
    """A checkpoint (file or dict) -> flat state dict. Files: TorchScript archive (its state dict
    only), safetensors, or ``torch.save`` output read with ``weights_only=True``. The weights may
    sit under ``"state_dict"`` and carry DataParallel's ``module.`` prefix."""
    if isinstance(source, Mapping):
        sd, path = source, "state_dict"
    elif (path := Path(source)).suffix == ".safetensors":
        sd = load_safetensors(path)[0]
    elif _is_torchscript(path):
        with warnings.catch_warnings():  # torch.jit is deprecated, but it is OpenAI's format
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit")
            sd = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    sd = dict(sd)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _is_openai_layout(sd: Mapping[str, Tensor]) -> bool:
    return ("text_projection" in sd and "token_embedding.weight" in sd
            and ("visual.proj" in sd or "visual.layer1.0.conv1.weight" in sd))


def _load_strict(model: nn.Module, sd: Mapping[str, Tensor], what: str) -> None:
    load_state_dict_strict(model, dict(sd), what)


def _model_from_openai_state_dict(sd: Mapping[str, Tensor], what: str) -> nn.Module:
    """Build OpenAI's architecture from the shapes (open_clip's ``build_model_from_openai_state_dict``:
    QuickGELU, 64-wide heads) and load the weights exactly, in fp32."""
    oc = _open_clip()
    sd = {k: v for k, v in sd.items() if k not in _OPENAI_EXTRA_KEYS}
    try:
        # open_clip casts to fp16 while building; reload below so fp32 checkpoints stay exact
        model = oc.model.build_model_from_openai_state_dict(dict(sd), cast_dtype=None)
    except KeyError as e:
        raise ValueError(f"{what} is not an OpenAI CLIP state dict: missing key {e}") from None
    except RuntimeError as e:
        raise ValueError(f"{what} does not fit the CLIP architecture inferred from its shapes: {e}") from None
    model.float()
    _load_strict(model, sd, what)
    return model


def build_model(config: Mapping[str, Any]) -> Tuple[nn.Module, Tuple[float, ...], Tuple[float, ...]]:
    """open_clip model config (embed_dim, vision_cfg, text_cfg, optional quick_gelu, custom_text,
    preprocess_cfg) -> (randomly initialised, trainable open_clip model, mean, std)."""
    oc = _open_clip()
    cfg = dict(config)
    pre = dict(cfg.pop("preprocess_cfg", None) or {})
    if dict(cfg.get("text_cfg") or {}).get("hf_model_name"):
        raise ValueError("Hugging Face text towers are not supported: hairlib's CLIPs use CLIP's BPE tokenizer")

    if dict(cfg.get("vision_cfg") or {}).get("timm_model_name") in mini_towers.TOWERS:
        mini_towers.register()  # hairlib's own image towers, built by open_clip's timm path
    cls = oc.model.CustomTextCLIP if cfg.pop("custom_text", False) else oc.model.CLIP
    try:
        model = cls(**cfg)
    except TypeError as e:
        raise ValueError(f"not an open_clip CLIP config ({e}); expected keys embed_dim, vision_cfg, text_cfg") from None
    return model, tuple(pre.get("mean", OPENAI_MEAN)), tuple(pre.get("std", OPENAI_STD))


def _context_length(model: nn.Module) -> int:
    ctx = getattr(model, "context_length", None)
    return int(ctx if ctx is not None else model.text.context_length)


def _openai_name(name: str) -> Optional[str]:
    """"ViT-B/32", "ViT-B-32", "vit-b/32" -> "ViT-B/32"; None for other strings."""
    def key(n):
        return n.replace("/", "-").lower()
    return next((n for n in OPENAI_MODELS if key(n) == key(name)), None)


def load_clip(name_or_path: Union[str, os.PathLike] = "ViT-B/32", device: Union[str, torch.device] = "cpu", *,
              config: Optional[Mapping[str, Any]] = None,
              state_dict: Union[None, str, os.PathLike, Mapping[str, Tensor]] = None,
              model_name: Optional[str] = None,
              dtype: torch.dtype = torch.float32, label: Optional[str] = None) -> CLIP:
    """Load a frozen CLIP.

    name_or_path:
      * this module downloads nothing: OpenAI's ViT-B/32 is the file
        ``hairlib.weights.fetch("clip-vit-b32")`` returns (``load_world("ffhq")`` fetches it);
      * a file: OpenAI's original TorchScript ``.pt``, or a state dict (``torch.save`` or
        safetensors). Without ``config``/``model_name`` it must be in OpenAI's layout and the
        architecture is inferred from its shapes (QuickGELU, as OpenAI trained);
      * with ``config``, only a label (``CLIP.name``), or the state dict's file if
        ``state_dict`` is None.
    config: an open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, optional
      ``quick_gelu``, ``preprocess_cfg`` with mean/std), e.g. the mini world's small CLIP.
    state_dict: weights for ``config`` or ``model_name`` (a dict or a file).
    model_name: an open_clip architecture name (``"ViT-B-32"``) for an open_clip state dict.
    dtype: weight dtype (fp32 default). device: where the model lives.

    Every load is strict: keys or shapes that do not fit raise ``ValueError`` naming them.
    The tokenizer is always CLIP's BPE with the model's context length.
    """
    oc = _open_clip()
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating type, got {dtype}")
    mean, std = OPENAI_MEAN, OPENAI_STD
    name = str(name_or_path)
    is_file = Path(name_or_path).is_file() if name else False
    openai = None if is_file else _openai_name(name)

    if config is not None or model_name is not None:
        source = state_dict if state_dict is not None else (name_or_path if is_file else None)
        if source is None:
            raise ValueError("config/model_name given without weights: pass state_dict= (a dict or a file)")
        what = "state_dict" if isinstance(source, Mapping) else str(source)
        sd = _read_state_dict(source)
        if config is None:
            config = oc.get_model_config(model_name)
            if config is None:
                raise ValueError(f"open_clip knows no model {model_name!r} (see open_clip.list_models())")
        model, mean, std = build_model(config)
        if any(k.startswith("text.") for k in model.state_dict()):
            sd = oc.model.convert_to_custom_text_state_dict(sd)  # older open_clip checkpoints
        _load_strict(model, sd, what)
        if openai is not None:  # the default "ViT-B/32" is no label for these weights
            name = model_name or "custom"
    elif state_dict is not None:
        what = "state_dict" if isinstance(state_dict, Mapping) else str(state_dict)
        sd = _read_state_dict(state_dict)
        if not _is_openai_layout(sd):
            raise ValueError(f"{what} is not in OpenAI's layout; pass config= or model_name= to say its architecture")
        model = _model_from_openai_state_dict(sd, what)
        if openai is not None:  # the default "ViT-B/32" is no label for these weights
            name = "custom"
    elif openai is not None:
        raise FileNotFoundError(f"{name} names OpenAI's weights, which this module does not download: pass the "
                                f"checkpoint's path, e.g. load_clip(hairlib.weights.fetch({OPENAI_MODELS[openai]!r}), "
                                f"label={openai!r}) (`hairlib fetch {OPENAI_MODELS[openai]}` fetches it once)")
    elif is_file:
        sd = _read_state_dict(name_or_path)
        if not _is_openai_layout(sd):
            raise ValueError(f"{name_or_path} is not an OpenAI-layout CLIP checkpoint; "
                             "pass config= or model_name= to say its architecture")
        model = _model_from_openai_state_dict(sd, name)
    else:
        known = ", ".join(OPENAI_MODELS)
        if not isinstance(name_or_path, str) or Path(name).suffix:
            raise FileNotFoundError(f"no CLIP checkpoint at {name!r} (known names: {known})")
        raise ValueError(f"unknown CLIP {name!r}: known names are {known}, or pass a checkpoint path / config=")

    model = model.to(device=device, dtype=dtype).eval()
    return CLIP(model, _bpe_tokenizer(_context_length(model)), name=label or name, mean=mean, std=std)

