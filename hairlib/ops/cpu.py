"""What this CPU can do fast: bf16 matrix units (Intel AMX-BF16); and hairlib's CPU kernels.

On a CPU with AMX-BF16, oneDNN runs bf16 convolutions on channels-last tensors several times
faster than fp32 ones (a 3x3 128 -> 128 conv at 64 px, batch 16, two cores of a Xeon with AMX:
~800-1200 vs ~100-170 GFLOP/s); without it, bf16 is emulated and slower than fp32.
``training_dtype`` is what the fast training path runs its activations in.

``KERNELS`` is the C++ extension holding the CPU kernels of ``styled_bias_act``, ``modulate``
and channels-last ``upfirdn2d`` (``cpu_ops.cpp``, ``styled_act_cpu.cpp``, ``upfirdn2d_cpu.cpp``),
built on first use for this machine's instruction set (see ``hairlib.ops._build``).
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from . import _build

__all__ = ["has_amx_bf16", "cpu_name", "training_dtype", "frozen_autocast", "KERNELS"]

KERNELS = _build.Extension("cpu_ops", ["cpu_ops.cpp", "styled_act_cpu.cpp", "upfirdn2d_cpu.cpp"], cpu=True)


@functools.lru_cache(maxsize=None)
def has_amx_bf16() -> bool:
    """True if this CPU has AMX-BF16 tiles that PyTorch's oneDNN can use.

    Asks PyTorch (``torch.cpu._is_amx_tile_supported``, which also checks that the OS enabled the
    tiles) and, where that private function is missing, the ``amx_bf16`` flag of /proc/cpuinfo.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is not None and bf16 is not None:
        try:
            return bool(probe()) and bool(bf16())
        except Exception:  # noqa: BLE001 - a failed probe means "no"
            return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags


def cpu_name() -> str:
    """This CPU's model name (/proc/cpuinfo's), else the platform's machine type."""
    import platform

    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def training_dtype(device) -> torch.dtype:
    """The activations' dtype of the fast training path on ``device``: bf16 on a CPU with
    AMX-BF16, fp32 elsewhere (CUDA training keeps its fp32 path)."""
    device = torch.device(device)
    if device.type == "cpu" and has_amx_bf16():
        return torch.bfloat16
    return torch.float32


def frozen_autocast(device):
    """The context to run a frozen generator in while training a network through it (the edit
    networks, the encoder): bf16 autocast where ``training_dtype`` is bf16, else nothing. The
    caller casts what comes out back to fp32 before its losses."""
    device = torch.device(device)
    if training_dtype(device) == torch.bfloat16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
