"""Just-in-time build of hairlib's C++/CUDA extensions, and the choice of backend.

Nothing here compiles at import. An extension is built the first time an op needs it (with
``torch.utils.cpp_extension.load`` and ninja), in a build directory keyed by a hash of its
sources and of the torch / CUDA versions (and, for CPU extensions, which are compiled for the
build machine's instruction set, of the CPU's model and flags), so an edited kernel never
reuses a stale binary; the directories live under ``$TORCH_EXTENSIONS_DIR`` when it is set,
else under ``$HAIRLIB_HOME/torch_extensions``. A failed build warns once, is remembered for the
life of the process and the op falls back to its pure-PyTorch reference; it never raises unless
the user demanded the backend (``impl="cuda"`` / ``"cpu"`` or ``HAIRLIB_OPS=cuda`` / ``cpu``).

Backends:
    "ref"   pure PyTorch, any device, double backward
    "cuda"  our kernels (``hairlib/ops/*.cu``), CUDA tensors only
    "cpu"   our CPU kernels (``hairlib/ops/*_cpu.cpp``) for the ops that have them, CPU tensors
            only; double backward falls back to differentiating the reference
    "auto"  (default) on CUDA tensors, the faster of "cuda" and "ref" as measured on first use
            of each configuration (op, shape, dtype, arguments); on CPU tensors, the CPU kernel
            where the op has one (it is faster: one pass over memory instead of several),
            else "ref".
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

__all__ = ["IMPLS", "requested_impl", "use_impl", "Extension", "load_extension", "extension_status", "build_dir", "autotune"]

IMPLS = ("auto", "ref", "cuda", "cpu")
_HERE = Path(__file__).resolve().parent
_EXTENSIONS: Dict[str, object] = {}  # name -> loaded module
_FAILED: Dict[str, str] = {}  # name -> reason (remembered: we never retry a failed build)
_TUNED: Dict[tuple, str] = {}  # configuration key -> fastest impl
_SCOPED: contextvars.ContextVar = contextvars.ContextVar("hairlib_ops_impl", default=None)


def requested_impl(impl: Optional[str] = None) -> str:
    """The backend asked for: the ``impl`` argument, else the innermost ``use_impl`` block,
    else ``$HAIRLIB_OPS``, else "auto"."""
    impl = impl or _SCOPED.get() or os.environ.get("HAIRLIB_OPS", "auto") or "auto"
    impl = impl.strip().lower()
    if impl not in IMPLS:
        raise ValueError(f"unknown ops backend {impl!r}; choose one of {', '.join(IMPLS)} "
                         f"(argument impl= or environment variable HAIRLIB_OPS)")
    return impl


@contextlib.contextmanager
def use_impl(impl: str):
    """Run a block with every op on backend ``impl`` ("auto", "ref" or "cuda"), e.g. to benchmark
    a whole network per backend, without touching the process environment."""
    token = _SCOPED.set(requested_impl(impl))
    try:
        yield
    finally:
        _SCOPED.reset(token)


def _cache_root() -> Path:
    """``$TORCH_EXTENSIONS_DIR`` (PyTorch's setting) when set, else ``$HAIRLIB_HOME/torch_extensions``
    (``~/.cache/hairlib/torch_extensions`` without HAIRLIB_HOME)."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"])
    home = os.environ.get("HAIRLIB_HOME")
    root = Path(home) if home else Path.home() / ".cache" / "hairlib"
    return root / "torch_extensions"


def _cpu_identity() -> bytes:
    """The CPU's model and feature flags (a CPU extension is built for this instruction set)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        import platform

        return f"{platform.machine()} {platform.processor()}".encode()
    keep = [l for l in lines if l.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(dict.fromkeys(keep)).encode()


def build_dir(name: str, sources, *, cpu: bool = False) -> Path:
    """Build directory for ``name``: keyed by the sources' contents and the toolchain versions
    (and, for a CPU extension, by the CPU it is compiled for)."""
    h = hashlib.sha256()
    for src in [*sources, *sorted(p.name for p in _HERE.glob("*.h"))]:  # the headers they may include
        h.update(Path(src).name.encode())
        h.update((_HERE / src).read_bytes())
    h.update(torch.__version__.encode())
    h.update(str(torch.version.cuda).encode())
    if cpu:
        h.update(_cpu_identity())
    return _cache_root() / f"{name}-{h.hexdigest()[:16]}"


def _why_not_buildable_cpu() -> Optional[str]:
    import shutil

    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler!r} not found; set CXX)"
    return None


def _why_not_buildable() -> Optional[str]:
    if not torch.cuda.is_available():
        return "no CUDA device"
    return _why_no_toolkit()


def _why_no_toolkit() -> Optional[str]:
    """None when nvcc, its headers and ninja are at hand (fixing torch's guess of CUDA_HOME)."""
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None:
        return "no CUDA toolkit (nvcc) found; set CUDA_HOME"
    if not (Path(cpp_extension.CUDA_HOME) / "include" / "cuda_runtime.h").exists():
        # torch guesses CUDA_HOME from the nvcc on PATH; a wrapper in /usr/local/bin makes that
        # /usr/local, which has no headers. Prefer the conventional toolkit folder if it has them.
        fallback = Path("/usr/local/cuda")
        if (fallback / "include" / "cuda_runtime.h").exists():
            cpp_extension.CUDA_HOME = str(fallback)
        else:
            return f"CUDA toolkit at {cpp_extension.CUDA_HOME} has no headers (cuda_runtime.h); set CUDA_HOME"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


def compile_cuda(name: str, sources, directory, arch: str = "8.0"):
    """Compile and import the CUDA extension ``name`` from ``sources`` into ``directory`` for GPU
    architecture ``arch``, with or without a GPU here (CI checks that the kernels still build
    with the machine's nvcc). Raises RuntimeError saying why when there is no toolkit."""
    from torch.utils import cpp_extension

    why = _why_no_toolkit()
    if why is not None:
        raise RuntimeError(why)
    old = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    try:
        return cpp_extension.load(name=f"hairlib_{name}_check", sources=[str(_HERE / s) for s in sources],
                                  build_directory=str(directory), extra_cflags=["-O3"],
                                  extra_cuda_cflags=["-O3", "--use_fast_math"], verbose=False)
    finally:
        if old is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = old


def load_extension(name: str, sources, *, required: bool = False, cpu: bool = False):
    """Return the compiled extension ``name`` built from ``sources`` (paths relative to ops/).

    ``cpu``: a C++-only extension, compiled with OpenMP for the build machine's instruction set
    (``-march=native``); otherwise a CUDA one. Returns None (after warning once) when it cannot
    be built, unless ``required`` is true, in which case a RuntimeError says why.
    """
    if name in _EXTENSIONS:
        return _EXTENSIONS[name]
    kind = "CPU" if cpu else "CUDA"
    reason = _FAILED.get(name)
    if reason is None:
        reason = _why_not_buildable_cpu() if cpu else _why_not_buildable()
        if reason is None:
            try:
                from torch.utils import cpp_extension

                directory = build_dir(name, sources, cpu=cpu)
                directory.mkdir(parents=True, exist_ok=True)
                t0 = time.time()
                module = cpp_extension.load(
                    name=f"hairlib_{name}",
                    sources=[str(_HERE / s) for s in sources],
                    build_directory=str(directory),
                    extra_cflags=["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"] if cpu else ["-O3"],
                    extra_ldflags=["-fopenmp"] if cpu else None,
                    extra_cuda_cflags=None if cpu else ["-O3", "--use_fast_math"],
                    verbose=os.environ.get("HAIRLIB_OPS_VERBOSE") == "1",
                )
                _EXTENSIONS[name] = module
                if time.time() - t0 > 5:
                    warnings.warn(f"hairlib: built {kind} op {name!r} in {time.time() - t0:.0f} s "
                                  f"(cached in {directory})", stacklevel=3)
                return module
            except Exception as e:  # a failed build must never break the caller
                reason = f"build failed: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        _FAILED[name] = reason
        if not required and reason != "no CUDA device":
            warnings.warn(f"hairlib: {kind} op {name!r} unavailable ({reason}); using the PyTorch "
                          f"reference. Set HAIRLIB_OPS=ref to silence this.", stacklevel=3)
    if required:
        flag = kind.lower()
        raise RuntimeError(f"hairlib: {kind} op {name!r} was demanded (impl='{flag}' or HAIRLIB_OPS={flag}) "
                           f"but is unavailable: {reason}")
    return None


class Extension:
    """A lazily built extension: ``available()`` builds it on first call (False, after one
    warning, if it cannot be built); ``module()`` returns it or raises saying why not."""

    def __init__(self, name: str, sources, *, cpu: bool = False):
        self.name = name  # extension name (also the key of its build directory)
        self.sources = list(sources)  # paths relative to ops/
        self.cpu = cpu  # a C++-only extension for CPU tensors (else CUDA)

    def available(self, required: bool = False) -> bool:
        return load_extension(self.name, self.sources, required=required, cpu=self.cpu) is not None

    def module(self):
        return load_extension(self.name, self.sources, required=True, cpu=self.cpu)


def extension_status(name: str, *, cpu: bool = False) -> str:
    """'loaded', 'unavailable: <why>' or 'not built yet (builds on first use)' (for `hairlib info`)."""
    if name in _EXTENSIONS:
        return "loaded"
    if name in _FAILED:
        return f"unavailable: {_FAILED[name]}"
    why = _why_not_buildable_cpu() if cpu else _why_not_buildable()
    return f"unavailable: {why}" if why else "not built yet (builds on first use)"


def _time_ms(fn: Callable[[], object], repeats: int) -> float:
    """Mean milliseconds per call: CUDA events on the current stream, else wall time."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / repeats
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) * 1e3 / repeats


def autotune(key: tuple, candidates: Dict[str, Callable[[], object]], *, repeats: int = 5) -> str:
    """Name of the fastest candidate for ``key``, timed once and cached for the process.

    Each candidate is a no-argument callable running one forward of that backend. While a CUDA
    graph is being captured nothing is timed and the first candidate is returned.
    """
    if key in _TUNED:
        return _TUNED[key]
    names = list(candidates)
    if len(names) == 1 or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()):
        return names[0]
    times = {}
    with torch.no_grad():
        for name, fn in candidates.items():
            fn()  # warm-up (and the extension's first launch)
            times[name] = _time_ms(fn, repeats)
    best = min(times, key=times.get)
    _TUNED[key] = best
    return best


def tuned_choices() -> Dict[tuple, str]:
    """What autotuning chose so far (configuration key -> backend), for benchmarks and info."""
    return dict(_TUNED)


def _import_cuda_module(modname: str):
    """Import ``ops.<modname>`` lazily (it defines the autograd Functions over the extension)."""
    return importlib.import_module(f"{__package__}.{modname}")
