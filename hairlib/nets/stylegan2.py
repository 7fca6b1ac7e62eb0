"""StyleGAN2 (Karras et al., CVPR 2020) in the rosinality/stylegan2-pytorch layout.

The generator's and discriminator's state-dict keys and shapes are those of rosinality's
``model.py``, which StyleCLIP, HairCLIP, e4e and ManiCLIP all trained against, so
``stylegan2-ffhq-config-f.pt`` (key ``g_ema``) loads with ``strict=True`` and gives the same
images (max abs diff < 1e-4 against rosinality's own code with the same weights).

What differs from rosinality:
  * ops come from hairlib's ``ops`` package: nothing compiles at import, CPU works, CUDA
    kernels are used when they build and are faster;
  * an explicit API: ``mapping`` (z -> w), ``synthesis`` (W+ -> image), ``styles`` (W+ ->
    StyleSpace S, the per-layer affine outputs) and ``synthesize_from_styles`` (S -> image);
    ``forward`` returns an image, not ``(image, None)``;
  * noise defaults to the fixed buffers (``noise_mode="const"``: the same latent always gives
    the same image); ``"random"`` and ``"none"`` are there for training and tests;
  * the channel table accepts a cap (``channel_max``) so a 64 px mini model shares the code;
  * the checkpoint's ``latent_avg`` is kept as a non-persistent buffer, so ``g_ema`` still
    loads strictly;
  * a second, faster execution of the same parameters for training (``set_execution``; by
    default chosen in training mode): modulated convolutions run split (StyleGAN2-ADA's
    ``fused_modconv=False``: modulate the activations, one convolution for the batch,
    demodulate in the epilogue, which also adds the noise and the bias and applies the
    activation in one pass), the discriminator's residual sum and 1/sqrt(2) folded into its
    second convolution's epilogue, the discriminator run once on reals and fakes
    (``batches=2``). Under CPU autocast (bf16) the activations are bf16 and channels-last
    between layers, styles, demodulation coefficients, the RGB image and the logits fp32.
    Inference (eval mode) runs rosinality's operations exactly.

Images are [N, 3, H, W] with values nominally in [-1, 1]; W is [N, style_dim]; W+ is
[N, num_ws, style_dim].
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from hairlib.nets.loading import load_state_dict_strict, read_checkpoint
from hairlib.ops import FusedLeakyReLU, fused_leaky_relu, modulate, styled_bias_act, upfirdn2d

__all__ = ["StyleGAN2Config", "Generator", "Discriminator", "StyleLayer", "infer_generator_config",
           "load_generator", "load_state_dict_strict", "channel_table", "MODCONV_IMPLS", "EXECUTIONS"]

BLUR_KERNEL = (1, 3, 3, 1)
MODCONV_IMPLS = ("auto", "grouped", "split")  # see ModulatedConv2d
# How a network executes its parameters (see Generator.set_execution, Discriminator.set_execution):
# "reference" = rosinality's operations exactly; "fast" = the cheaper equivalent execution;
# "auto" = "fast" in training mode (batch > 1 for the generator), else "reference".
EXECUTIONS = ("auto", "reference", "fast")
_MODCONV_OF = {"auto": "auto", "reference": "grouped", "fast": "split"}
_SQRT1_2 = 1 / math.sqrt(2)


def _fp32(device: torch.device):
    """A region where autocast is off (styles, demodulation coefficients, logits stay fp32)."""
    return torch.autocast(device.type, enabled=False)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last if x is stored so (and not also contiguous), else contiguous_format."""
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _to_activations(x: torch.Tensor) -> torch.Tensor:
    """A network's input in the activations' format: under CPU autocast, its dtype (bf16) and
    channels-last (what oneDNN's bf16 convolutions run fastest on); otherwise unchanged."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return x.to(dtype=torch.get_autocast_dtype("cpu"), memory_format=torch.channels_last)
    return x


def channel_table(size: int, channel_multiplier: float = 2, channel_max: int = 512) -> Dict[int, int]:
    """rosinality's channel count per resolution (512 up to 32 px, then 16384*cm/res), capped.

    A fractional multiplier (e.g. 0.25) narrows the high resolutions of small models."""
    return {2 ** i: min(channel_max, 512, int(channel_multiplier * 16384) // 2 ** i) for i in range(2, int(math.log2(size)) + 1)}


@dataclass(frozen=True)
class StyleGAN2Config:
    """Architecture of a StyleGAN2 generator/discriminator. Defaults: FFHQ config-f (1024 px)."""
    size: int = 1024  # output resolution, a power of two >= 8
    style_dim: int = 512  # dimension of z, w and of every W+ row
    n_mlp: int = 8  # layers of the mapping network
    channel_multiplier: float = 2  # config-f uses 2; fractions narrow small models
    channel_max: int = 512  # cap on channels at any resolution (512 = rosinality's table)
    lr_mlp: float = 0.01  # learning-rate multiplier of the mapping network
    blur_kernel: Tuple[int, ...] = BLUR_KERNEL  # FIR filter for up/downsampling

    def __post_init__(self):
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"StyleGAN2 size must be a power of two >= 8, got {self.size}")

    @property
    def num_ws(self) -> int:
        """Rows of W+ (18 at 1024 px, 14 at 256 px, 10 at 64 px)."""
        return int(math.log2(self.size)) * 2 - 2

    @property
    def channels(self) -> Dict[int, int]:
        return channel_table(self.size, self.channel_multiplier, self.channel_max)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blur_kernel"] = list(self.blur_kernel)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StyleGAN2Config":
        d = dict(d)
        if "blur_kernel" in d:
            d["blur_kernel"] = tuple(d["blur_kernel"])
        return cls(**d)


# ----------------------------------------------------------------------------------------------
# Building blocks (rosinality names: their parameter and buffer names are the checkpoint's keys)

class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """Separable 1-D taps -> normalised 2-D FIR kernel [len(k), len(k)]."""
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


class Upsample(nn.Module):
    """x2 upsampling with the FIR kernel (the skip path of ToRGB)."""

    def __init__(self, kernel=BLUR_KERNEL, factor: int = 2):
        super().__init__()
        self.factor = factor  # upsampling factor
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class Blur(nn.Module):
    """FIR filter with padding, before a strided conv or after a transposed conv."""

    def __init__(self, kernel, pad: Tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor ** 2
        self.register_buffer("kernel", k)
        self.pad = pad  # (pad0, pad1) applied to both axes

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate (weights scaled at run time by 1/sqrt(fan_in))."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride = stride  # convolution stride
        self.padding = padding  # zero padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear with equalised learning rate; optional fused bias + leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: Optional[str] = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        self.activation = activation  # None or "fused_lrelu"
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul  # learning-rate multiplier (0.01 in the mapping network)

    def forward(self, x):
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution: w -> s (affine ``modulation``) -> scaled, demodulated conv.

    Two executions of the same parameters, chosen by ``impl``:
      * "grouped" (rosinality's, StyleGAN2's ``fused_modconv``): the style and demodulation are
        folded into one weight per sample, run as a grouped convolution with N groups;
      * "split" (StyleGAN2-ADA's ``fused_modconv=False``): the activations are multiplied by s,
        one convolution with the shared weight runs for the whole batch, and the output is
        multiplied by the demodulation coefficients. Equal up to float rounding; faster for
        training with a batch (one large convolution, and its weight gradient, instead of N
        small ones), and the multiplications fuse into the neighbouring elementwise work;
      * "auto" (default): "split" for a batch > 1 in training mode or under autograd (an
        optimisation through a frozen generator: inversion, the edit networks' training), else
        "grouped", so that inference computes exactly what rosinality's code does. On a CPU the
        split execution is ~2x faster there (`hairlib bench invert`).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, downsample: bool = False,
                 blur_kernel=BLUR_KERNEL):
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample  # transposed conv x2 then blur
        self.downsample = downsample  # blur then stride-2 conv
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate  # False only in ToRGB
        self.impl = "auto"  # "auto" | "grouped" | "split" (see the class docstring)

    def split(self, x: torch.Tensor) -> bool:
        """Whether a call on ``x`` [N, in, H, W] runs split (``impl``; "auto": N > 1, training,
        under autograd or under CPU autocast, whose bf16 grouped convolution is 4x slower)."""
        if self.impl not in MODCONV_IMPLS:
            raise ValueError(f"ModulatedConv2d.impl must be one of {MODCONV_IMPLS}, got {self.impl!r}")
        if self.impl == "auto":
            return x.shape[0] > 1 and (self.training or torch.is_grad_enabled()
                                       or (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")))
        return self.impl == "split"

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x: [N, in, H, W]; w: [N, style_dim]."""
        return self.forward_s(x, self.modulation(w))

    def forward_s(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """x: [N, in, H, W]; s: [N, in] StyleSpace code of this layer -> [N, out, H', W']."""
        if self.split(x):
            out, dcoef = self.forward_split(x, s)
            return out if dcoef is None else out * dcoef.to(out.dtype)[:, :, None, None]
        n, c, h, w = x.shape
        weight = self.scale * self.weight * s.view(n, 1, c, 1, 1)  # [N, out, in, k, k]
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)  # [N, out]
            weight = weight * demod.view(n, self.out_channel, 1, 1, 1)
        k = self.kernel_size
        if self.upsample:
            x = x.reshape(1, n * c, h, w)
            weight = weight.transpose(1, 2).reshape(n * c, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=n)
            out = out.view(n, self.out_channel, out.shape[2], out.shape[3])
            return self.blur(out)
        if self.downsample:
            x = self.blur(x)
            h, w = x.shape[2], x.shape[3]
            out = F.conv2d(x.reshape(1, n * c, h, w), weight.view(n * self.out_channel, c, k, k),
                           padding=0, stride=2, groups=n)
        else:
            out = F.conv2d(x.reshape(1, n * c, h, w), weight.view(n * self.out_channel, c, k, k),
                           padding=self.padding, groups=n)
        return out.view(n, self.out_channel, out.shape[2], out.shape[3])

    def forward_split(self, x: torch.Tensor, s: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The "split" execution, leaving the demodulation to the caller's epilogue.

        x: [N, in, H, W], any float dtype and memory format (both kept: the weight is cast to
        x's dtype); s: [N, in]. Returns the convolution of ``x * s`` with the shared weight,
        [N, out, H', W'] (not demodulated), and the demodulation coefficients [N, out] in fp32
        (None when ``demodulate`` is off): rsqrt(sum_{in,k,k} (scale * weight * s)^2 + eps),
        computed as (s^2) @ (sum_{k,k} (scale * weight)^2)^T.
        """
        weight = self.weight.squeeze(0) * self.scale  # [out, in, k, k], fp32 (a view: no copy in backward)
        dcoef = None
        if self.demodulate:
            with _fp32(x.device):
                dcoef = torch.rsqrt(s.float().square() @ weight.square().sum([2, 3]).t() + self.eps)  # [N, out]
        x = modulate(x, s)
        weight = weight.to(x.dtype)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        elif self.downsample:
            out = F.conv2d(self.blur(x), weight, stride=2)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        return out, dcoef


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by a learned scalar (key ``weight``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 input of the synthesis network (key ``input``)."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    """ModulatedConv2d + noise + bias/leaky ReLU."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel=BLUR_KERNEL, demodulate: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    upsample=upsample, blur_kernel=blur_kernel, demodulate=demodulate)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward_s(self, x, s, noise=None):
        """x: [N, in, H, W]; s: [N, in]; noise: [N or 1, 1, H', W'] or None (fresh normal noise)."""
        if not self.conv.split(x):
            return self.activate(self.noise(self.conv.forward_s(x, s), noise=noise))
        # split execution: demodulation, noise, bias, leaky ReLU and gain in one epilogue
        out, dcoef = self.conv.forward_split(x, s)
        if noise is None:
            noise = torch.randn(out.shape[0], 1, out.shape[2], out.shape[3], device=out.device)
        return styled_bias_act(out, self.activate.bias, dcoef, noise, self.noise.weight,
                               self.activate.negative_slope, self.activate.scale)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB, added to the upsampled skip image."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True, blur_kernel=BLUR_KERNEL):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward_s(self, x, s, skip=None):
        """x: [N, in, H, W]; s: [N, in]; skip: [N, 3, H/2, W/2] or None -> [N, 3, H, W].

        In the split execution the image (3 channels, cheap) is kept in fp32 whatever the
        activations' dtype, as StyleGAN2-ADA does, so that rounding does not accumulate over
        the resolutions, and in the activations' memory format (the skip's upsampling then
        takes hairlib's channels-last CPU kernel on the bf16 path)."""
        if not self.conv.split(x):
            out = self.conv.forward_s(x, s) + self.bias
            if skip is not None:
                out = out + self.upsample(skip)
            return out
        out, _ = self.conv.forward_split(x, s)
        with _fp32(x.device):
            out = out.float() + self.bias  # x's memory format (channels-last on the bf16 path)
            if skip is not None:
                out = out + self.upsample(skip.float().contiguous(memory_format=_memory_format(out)))
        return out


@dataclass(frozen=True)
class StyleLayer:
    """One StyleSpace layer: which module it modulates and where."""
    index: int  # position in the list returned by Generator.styles
    name: str  # module path, e.g. "convs.3.conv"
    w_index: int  # row of W+ that drives it
    resolution: int  # output resolution of the layer
    channels: int  # length of its style vector s
    is_torgb: bool  # ToRGB layers are excluded from global directions (StyleCLIP)


class Generator(nn.Module):
    """StyleGAN2 generator in rosinality's layout (``g_ema`` of their checkpoints).

    Construct with a StyleGAN2Config or rosinality's arguments
    ``Generator(size, style_dim, n_mlp, channel_multiplier=2)``.
    """

    def __init__(self, size_or_config=1024, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: float = 2,
                 blur_kernel=BLUR_KERNEL, lr_mlp: float = 0.01, channel_max: int = 512):
        super().__init__()
        if isinstance(size_or_config, StyleGAN2Config):
            cfg = size_or_config
        else:
            cfg = StyleGAN2Config(int(size_or_config), style_dim, n_mlp, channel_multiplier, channel_max,
                                  lr_mlp, tuple(blur_kernel))
        self.config = cfg
        self.size = cfg.size
        self.style_dim = cfg.style_dim
        self.log_size = int(math.log2(cfg.size))
        self.num_layers = (self.log_size - 2) * 2 + 1  # noise inputs
        self.n_latent = cfg.num_ws
        ch = self.channels = cfg.channels
        sd, bk = cfg.style_dim, cfg.blur_kernel

        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(sd, sd, lr_mul=cfg.lr_mlp, activation="fused_lrelu")
                                                  for _ in range(cfg.n_mlp)])
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, sd, blur_kernel=bk)
        self.to_rgb1 = ToRGB(ch[4], sd, upsample=False)
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty; kept because rosinality has it (no keys)
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, sd, upsample=True, blur_kernel=bk))
            self.convs.append(StyledConv(out_ch, out_ch, 3, sd, blur_kernel=bk))
            self.to_rgbs.append(ToRGB(out_ch, sd, blur_kernel=bk))
            in_ch = out_ch
        # The checkpoint's mean w (rosinality stores it beside g_ema); not part of the state dict.
        self.register_buffer("latent_avg", torch.zeros(1, sd), persistent=False)
        self.has_latent_avg = False
        self.style_layers = self._make_style_layers()

    # --- StyleSpace bookkeeping ---------------------------------------------------------------
    def _style_modules(self) -> List[Tuple[str, nn.Module, int, int, bool]]:
        """(name, ModulatedConv2d, w index, resolution, is_torgb) in synthesis order."""
        mods = [("conv1.conv", self.conv1.conv, 0, 4, False), ("to_rgb1.conv", self.to_rgb1.conv, 1, 4, True)]
        for j in range(self.log_size - 2):
            res = 2 ** (j + 3)
            i = 1 + 2 * j
            mods.append((f"convs.{2 * j}.conv", self.convs[2 * j].conv, i, res, False))
            mods.append((f"convs.{2 * j + 1}.conv", self.convs[2 * j + 1].conv, i + 1, res, False))
            mods.append((f"to_rgbs.{j}.conv", self.to_rgbs[j].conv, i + 2, res, True))
        return mods

    def _make_style_layers(self) -> Tuple[StyleLayer, ...]:
        return tuple(StyleLayer(k, name, wi, res, m.in_channel, rgb)
                     for k, (name, m, wi, res, rgb) in enumerate(self._style_modules()))

    @property
    def num_ws(self) -> int:
        return self.n_latent

    # --- latents ------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor, truncation: float = 1.0, truncation_latent: Optional[torch.Tensor] = None) -> torch.Tensor:
        """z [N, style_dim] -> w [N, style_dim], optionally truncated toward ``truncation_latent``
        (default: the checkpoint's ``latent_avg`` or, failing that, a mean of 4096 samples).
        Runs in fp32 under autocast too."""
        with _fp32(z.device):
            w = self.style(z.float())
        if truncation != 1.0:
            w = self.truncate(w, truncation, truncation_latent)
        return w

    def truncate(self, w: torch.Tensor, truncation: float, truncation_latent: Optional[torch.Tensor] = None) -> torch.Tensor:
        """w or W+ -> avg + truncation * (w - avg)."""
        avg = self.get_latent_avg() if truncation_latent is None else truncation_latent
        if w.ndim == 3 and avg.ndim == 2:
            avg = avg[:, None]
        return avg + truncation * (w - avg)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: Optional[int] = 0) -> torch.Tensor:
        """Mean of ``n`` mapped z: [1, style_dim]."""
        gen = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.style_dim, generator=gen).to(self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def get_latent_avg(self) -> torch.Tensor:
        if not self.has_latent_avg:
            self.set_latent_avg(self.mean_latent())
        return self.latent_avg

    def set_latent_avg(self, latent_avg: torch.Tensor) -> None:
        self.latent_avg.copy_(latent_avg.reshape(1, self.style_dim))
        self.has_latent_avg = True

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, style_dim] -> W+ [N, num_ws, style_dim]."""
        return w[:, None].repeat(1, self.n_latent, 1)

    def mix(self, w1: torch.Tensor, w2: torch.Tensor, inject_index: Optional[int] = None) -> torch.Tensor:
        """Style mixing: rows < inject_index from w1, the rest from w2 (random index if None)."""
        if inject_index is None:
            inject_index = random.randint(1, self.n_latent - 1)
        return torch.cat([w1[:, None].expand(-1, inject_index, -1),
                          w2[:, None].expand(-1, self.n_latent - inject_index, -1)], 1)

    def to_wplus(self, latent: torch.Tensor, space: str, truncation: float = 1.0,
                 truncation_latent: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Any of z [N, D], w [N, D], W+ [N, L, D] -> W+ (truncation applied in W)."""
        if space == "z":
            return self.broadcast(self.mapping(latent, truncation, truncation_latent))
        if space == "w":
            w = latent if truncation == 1.0 else self.truncate(latent, truncation, truncation_latent)
            return self.broadcast(w)
        if space in ("w+", "wplus"):
            if latent.ndim != 3 or latent.shape[1] != self.n_latent or latent.shape[2] != self.style_dim:
                raise ValueError(f"W+ must be [N, {self.n_latent}, {self.style_dim}], got {tuple(latent.shape)}")
            return latent if truncation == 1.0 else self.truncate(latent, truncation, truncation_latent)
        raise ValueError(f"space must be 'z', 'w' or 'w+', got {space!r}")

    # --- StyleSpace ---------------------------------------------------------------------------
    def styles(self, wplus: torch.Tensor) -> List[torch.Tensor]:
        """W+ [N, num_ws, style_dim] -> StyleSpace S: one [N, channels] tensor per style layer,
        in synthesis order (see ``style_layers``; ToRGB layers included). Runs in fp32 under
        autocast too."""
        if wplus.ndim != 3 or wplus.shape[1] != self.n_latent:
            raise ValueError(f"styles() expects W+ [N, {self.n_latent}, {self.style_dim}], got {tuple(wplus.shape)}")
        with _fp32(wplus.device):
            return [m.modulation(wplus[:, wi].float()) for _, m, wi, _, _ in self._style_modules()]

    def _noise_list(self, batch: int, noise_mode: str, noise: Optional[Sequence[torch.Tensor]]):
        if noise is not None:
            return list(noise)
        if noise_mode == "const":
            return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if noise_mode == "random":
            return [None] * self.num_layers
        if noise_mode == "none":
            return [torch.zeros_like(getattr(self.noises, f"noise_{i}")) for i in range(self.num_layers)]
        raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")

    def synthesize_from_styles(self, styles: Sequence[torch.Tensor], noise_mode: str = "const",
                               noise: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        """StyleSpace S (as from ``styles``) -> images [N, 3, size, size] in about [-1, 1].

        Under CPU autocast (bf16) the activations run in bf16 and channels-last from the
        constant input on (see ``ModulatedConv2d`` for the execution each layer picks)."""
        if len(styles) != len(self.style_layers):
            raise ValueError(f"expected {len(self.style_layers)} style tensors, got {len(styles)}")
        n = styles[0].shape[0]
        noise = self._noise_list(n, noise_mode, noise)
        out = self.conv1.forward_s(_to_activations(self.input(n)), styles[0], noise=noise[0])
        skip = self.to_rgb1.forward_s(out, styles[1])
        k = 2
        for j in range(self.log_size - 2):
            out = self.convs[2 * j].forward_s(out, styles[k], noise=noise[1 + 2 * j])
            out = self.convs[2 * j + 1].forward_s(out, styles[k + 1], noise=noise[2 + 2 * j])
            skip = self.to_rgbs[j].forward_s(out, styles[k + 2], skip)
            k += 3
        return skip

    def synthesis(self, wplus: torch.Tensor, noise_mode: str = "const",
                  noise: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        """W+ [N, num_ws, style_dim] -> images [N, 3, size, size]."""
        return self.synthesize_from_styles(self.styles(wplus), noise_mode=noise_mode, noise=noise)

    def forward(self, latent: torch.Tensor, space: str = "w+", truncation: float = 1.0,
                truncation_latent: Optional[torch.Tensor] = None, noise_mode: str = "const",
                noise: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        """Generate images from z, w or W+ (``space``). Returns [N, 3, size, size]."""
        return self.synthesis(self.to_wplus(latent, space, truncation, truncation_latent),
                              noise_mode=noise_mode, noise=noise)

    def set_execution(self, mode: str) -> "Generator":
        """How the synthesis network executes (never what it computes, beyond rounding):
        "reference" runs every modulated convolution grouped (rosinality's), "fast" split
        (StyleGAN2-ADA's fused_modconv=False, with one epilogue pass per layer), "auto" (the
        default) split for a batch > 1 in training mode, under autograd or CPU autocast. See
        ``ModulatedConv2d``.
        Returns self."""
        if mode not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {mode!r}")
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.impl = _MODCONV_OF[mode]
        return self

    def make_noise(self, seed: Optional[int] = None) -> List[torch.Tensor]:
        """Fresh noise maps shaped like the buffers."""
        gen = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        dev = self.input.input.device
        return [torch.randn(getattr(self.noises, f"noise_{i}").shape, generator=gen).to(dev)
                for i in range(self.num_layers)]


# ----------------------------------------------------------------------------------------------
# Discriminator

class ConvLayer(nn.Sequential):
    """[Blur] + EqualConv2d + [FusedLeakyReLU] (rosinality's numbering of sub-modules)."""

    def __init__(self, in_channel, out_channel, kernel_size, downsample=False, blur_kernel=BLUR_KERNEL,
                 bias=True, activate=True):
        layers = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, padding=padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """(conv2(conv1(x)) + skip(x)) / sqrt(2): x [N, in, H, W] -> [N, out, H/2, W/2].

    The fast execution folds the 1/sqrt(2) into conv2's activation gain and the skip
    convolution's weight scale (both linear in it) and adds the skip in conv2's activation
    epilogue (``styled_bias_act(..., residual=skip)``): the division's and the sum's passes
    over the output are gone, forward and backward."""

    def __init__(self, in_channel, out_channel, blur_kernel=BLUR_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False, bias=False,
                              blur_kernel=blur_kernel)
        self.fast = False  # set by Discriminator.forward

    def forward(self, x):
        if not self.fast:
            return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)
        skip_blur, skip_conv = self.skip
        skip = F.conv2d(skip_blur(x), skip_conv.weight * (skip_conv.scale * _SQRT1_2), stride=skip_conv.stride)
        blur, conv, act = self.conv2
        return styled_bias_act(conv(blur(self.conv1(x))), act.bias, negative_slope=act.negative_slope,
                               scale=act.scale * _SQRT1_2, residual=skip)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator in rosinality's layout. images [N, 3, size, size] -> [N, 1]."""

    def __init__(self, size_or_config=1024, channel_multiplier: float = 2, blur_kernel=BLUR_KERNEL,
                 channel_max: int = 512, stddev_group: int = 4, condition_dim: int = 0):
        super().__init__()
        if isinstance(size_or_config, StyleGAN2Config):
            cfg = size_or_config
        else:
            cfg = StyleGAN2Config(int(size_or_config), channel_multiplier=channel_multiplier,
                                  channel_max=channel_max, blur_kernel=tuple(blur_kernel))
        self.config = cfg
        ch = cfg.channels
        size = cfg.size
        convs = [ConvLayer(3, ch[size], 1)]
        in_ch = ch[size]
        for i in range(int(math.log2(size)), 2, -1):
            out_ch = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, cfg.blur_kernel))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.stddev_group = stddev_group  # minibatch-stddev group size
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"),
                                          EqualLinear(ch[4], 1))
        if condition_dim:  # projection discriminator: zero at the start, and for a zero condition
            self.embed = EqualLinear(condition_dim, ch[4], bias=False)
            nn.init.zeros_(self.embed.weight)
        self.execution = "auto"  # see set_execution

    def set_execution(self, mode: str) -> "Discriminator":
        """How the network executes (never what it computes, beyond rounding): "reference"
        runs rosinality's operations; "fast" folds each residual block's 1/sqrt(2) into its
        branches and computes the minibatch standard deviation from explicit moments; "auto"
        (the default) is "fast" in training mode. Returns self."""
        if mode not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {mode!r}")
        self.execution = mode
        return self

    def forward(self, x: torch.Tensor, batches: int = 1, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        """images [N, 3, size, size] -> logits [N, 1] (fp32).

        ``condition`` [N, condition_dim] (a discriminator built with ``condition_dim``): the
        projection discriminator's logit (Miyato & Koyama 2018), the unconditional one plus the
        inner product of ``embed(condition)`` with the penultimate features; a zero row is
        judged unconditionally.

        ``batches``: x is that many equal batches concatenated, whose minibatch standard
        deviations are computed separately, so that ``D(cat([a, b]), batches=2)`` equals
        ``cat([D(a), D(b)])`` (one pass over reals and fakes: larger convolutions, half the
        calls). Under CPU autocast (bf16) the convolutions run in bf16 and channels-last; the
        minibatch standard deviation and the final linear layers run in fp32."""
        fast = self.execution == "fast" or (self.execution == "auto" and self.training)
        for block in self.convs:
            if isinstance(block, ResBlock):
                block.fast = fast
        out = self.convs(_to_activations(x))
        n, c, h, w = out.shape
        if batches < 1 or n % batches:
            raise ValueError(f"Discriminator: a batch of {n} does not split into {batches} equal batches")
        group = min(n // batches, self.stddev_group)
        if (n // batches) % group:
            group = 1
        f = self.stddev_feat
        y = out.float().reshape(batches, group, -1, f, c // f, h, w)  # [B, G, M, F, C/F, H, W]
        if fast:
            var = (y - y.mean(1, keepdim=True)).square().mean(1)
        else:
            var = y.var(1, unbiased=False)
        std = torch.sqrt(var + 1e-8).mean([3, 4, 5], keepdim=True).squeeze(3)  # [B, M, F, 1, 1]
        std = std.to(out.dtype).repeat(1, group, 1, h, w).reshape(n, f, h, w)
        out = self.final_conv(torch.cat([out, std], 1))
        with _fp32(x.device):
            flat = out.float().reshape(n, -1)
            if condition is None:
                return self.final_linear(flat)
            h = self.final_linear[0](flat)
            return self.final_linear[1](h) + (self.embed(condition.float()) * h).sum(1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# Loading

def infer_generator_config(state_dict: Dict[str, torch.Tensor]) -> StyleGAN2Config:
    """Recover size, style_dim, n_mlp, channel multiplier and cap from a rosinality g_ema state dict."""
    try:
        style_dim = state_dict["style.1.weight"].shape[1]
        n_mlp = len({k.split(".")[1] for k in state_dict if k.startswith("style.") and k.endswith(".weight")})
        n_rgb = len({k.split(".")[1] for k in state_dict if k.startswith("to_rgbs.")})
        size = 2 ** (n_rgb + 2)
        chans = {4: state_dict["input.input"].shape[1]}
        for j in range(n_rgb):
            chans[2 ** (j + 3)] = state_dict[f"to_rgbs.{j}.conv.weight"].shape[2]
    except KeyError as e:
        raise ValueError(f"not a rosinality StyleGAN2 generator state dict (no key {e}); "
                         f"expected keys like 'style.1.weight', 'to_rgbs.0.conv.weight'") from None
    channel_max = max(chans.values())
    # smallest multiplier whose table (with this cap) reproduces the checkpoint's channels
    for cm in (1, 2, 4, 8, 16, 32, 64, 0.5, 0.25, 0.125, 0.0625):
        if channel_table(size, cm, channel_max) == chans:
            return StyleGAN2Config(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=cm,
                                   channel_max=channel_max)
    raise ValueError(f"channel layout {chans} matches no StyleGAN2 channel table")


def load_generator(path_or_ckpt, *, key: str = "g_ema", config: Optional[StyleGAN2Config] = None,
                   device="cpu") -> Generator:
    """Load a rosinality-format checkpoint (a path or an already-loaded dict) into a Generator.

    The file is read with ``torch.load(weights_only=True)``; ``key`` selects the generator
    ("g_ema" by default; a bare state dict also works). The architecture is inferred from the
    tensors' shapes unless ``config`` is given. ``latent_avg`` is loaded when present.
    """
    ckpt, name = read_checkpoint(path_or_ckpt, "checkpoint")
    sd = ckpt[key] if key in ckpt else ckpt
    if "style.1.weight" not in sd:
        raise ValueError(f"{name}: no generator found (looked for key {key!r} holding 'style.1.weight'; "
                         f"top-level keys: {sorted(ckpt)[:8]})")
    cfg = config or infer_generator_config(sd)
    g = Generator(cfg)
    load_state_dict_strict(g, sd, what=f"{name}[{key!r}]")
    if "latent_avg" in ckpt:
        g.set_latent_avg(ckpt["latent_avg"].float())
    return g.to(device).eval().requires_grad_(False)
