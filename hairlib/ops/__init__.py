"""hairlib's ops: ``upfirdn2d``, fused bias + leaky-ReLU, and the modulation and epilogue of a
StyleGAN2 convolution run without its style (``modulate``, ``styled_bias_act``).

Each op has a pure-PyTorch reference that runs anywhere (and supports double backward, which
R1 and path-length regularisation need) and our own kernels: CUDA ones for ``upfirdn2d`` and
``fused_leaky_relu``, CPU ones for ``styled_bias_act`` and ``modulate`` (which also serve
``fused_leaky_relu`` on 4-D CPU tensors), JIT-built with ninja on first use. Nothing compiles at
import; a failed build warns once and falls back. Choose with ``impl=`` per call or
``HAIRLIB_OPS=auto|ref|cuda|cpu`` for the process. ``hairlib.ops.cpu`` says whether this CPU
has bf16 matrix units (AMX), which the fast training path uses.
"""
from ._build import IMPLS, extension_status, requested_impl, use_impl
from .bias_act import FusedLeakyReLU, fused_leaky_relu, fused_leaky_relu_ref
from .cpu import frozen_autocast, has_amx_bf16, training_dtype
from .styled import modulate, modulate_ref, styled_bias_act, styled_bias_act_ref
from .upfirdn2d import upfirdn2d, upfirdn2d_ref

__all__ = ["upfirdn2d", "upfirdn2d_ref", "fused_leaky_relu", "fused_leaky_relu_ref", "FusedLeakyReLU",
           "styled_bias_act", "styled_bias_act_ref", "modulate", "modulate_ref", "has_amx_bf16", "training_dtype", "frozen_autocast",
           "IMPLS", "requested_impl", "use_impl", "extension_status", "backend_report"]


def backend_report() -> dict:
    """Which backend each op would use on a CUDA tensor now (for `hairlib info`)."""
    return {
        "requested": requested_impl(),
        "upfirdn2d": extension_status("upfirdn2d"),
        "bias_act": extension_status("bias_act"),
        "cpu_ops": extension_status("cpu_ops", cpu=True),
    }
