"""hairlib's GPU ops: ``upfirdn2d`` and fused bias + leaky-ReLU.

Each op has a pure-PyTorch reference that runs anywhere (and supports double backward, which
R1 and path-length regularisation need) and our own CUDA kernel, JIT-built with ninja on first
use on a CUDA tensor. Nothing compiles at import; a failed build warns once and falls back.
Choose with ``impl=`` per call or ``HAIRLIB_OPS=auto|ref|cuda`` for the process.
"""
from ._build import IMPLS, extension_status, requested_impl, use_impl
from .bias_act import FusedLeakyReLU, fused_leaky_relu, fused_leaky_relu_ref
from .upfirdn2d import upfirdn2d, upfirdn2d_ref

__all__ = ["upfirdn2d", "upfirdn2d_ref", "fused_leaky_relu", "fused_leaky_relu_ref", "FusedLeakyReLU",
           "IMPLS", "requested_impl", "use_impl", "extension_status", "backend_report"]


def backend_report() -> dict:
    """Which backend each op would use on a CUDA tensor now (for `hairlib info`)."""
    return {
        "requested": requested_impl(),
        "upfirdn2d": extension_status("upfirdn2d"),
        "bias_act": extension_status("bias_act"),
    }
