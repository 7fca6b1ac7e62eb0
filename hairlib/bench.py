"""Benchmarks: backends side by side, in one run, on the current device.

``hairlib bench ops`` times each op on the shapes StyleGAN2 uses (forward, and forward +
backward) with every backend available here — the PyTorch reference, the reference under
``torch.compile``, our CUDA kernels, and ``auto`` (what the library picks) — and the whole
generator per backend. Numbers are medians in milliseconds; ratios are against the reference.
``hairlib bench edit`` times each StyleCLIP method on a World beside the paper's numbers.
``hairlib bench train`` times one StyleGAN2 training step (G + D) per execution, side by side.
``hairlib bench invert`` times one optimisation step through a World's frozen generator per
execution of its modulated convolutions, side by side.
"""
from __future__ import annotations

import contextlib
import csv
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from hairlib import ops
from hairlib.atomic import atomic_path
from hairlib.ops import _build

__all__ = ["time_fn", "bench_ops", "format_table", "write_csv", "device_name", "bench_edit", "format_edit_table",
           "write_edit_csv", "bench_train", "format_train_table", "write_train_csv", "TRAIN_ARCH", "WIDE_TRAIN_ARCH",
           "pick_threads", "bench_invert", "format_invert_table", "write_invert_csv"]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def time_fn(fn: Callable[[], object], device: torch.device, *, warmup: int = 2, repeats: int = 10,
            min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` in milliseconds (CUDA-synchronised)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    start_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start_all < min_time:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 10 * repeats:
            break
    return statistics.median(times)


@dataclass
class _Case:
    name: str  # what is measured
    shape: str  # input shape, for the table
    make: Callable[[str], Callable[[], object]]  # backend -> no-arg callable running forward (+ backward)


def _op_cases(device: torch.device, dtype: torch.dtype, res: int, batch: int, channels: int, backward: bool) -> List[_Case]:
    kernel = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
    kernel = (kernel[None] * kernel[:, None]) / 64.0
    cases = []

    def up_case(name, shape, up, down, pad, k):
        def make(impl):
            x = torch.randn(*shape, device=device, dtype=dtype, requires_grad=backward)
            fn = _compiled(ops.upfirdn2d_ref) if impl == "compile" else ops.upfirdn2d
            kw = {} if impl == "compile" else {"impl": impl}

            def run():
                y = fn(x, k, up=up, down=down, pad=pad, **kw)
                if backward:
                    y.sum().backward()
                return y
            return run
        return _Case(name, "x".join(map(str, shape)), make)

    half = res // 2
    cases.append(up_case("upfirdn2d up x2 (ToRGB skip)", (batch, 3, half, half), 2, 1, (2, 1), kernel * 4))
    cases.append(up_case("upfirdn2d blur (after conv-transpose)", (batch, channels, res + 1, res + 1), 1, 1, (1, 1), kernel * 4))
    cases.append(up_case("upfirdn2d down x2 (discriminator)", (batch, channels, res, res), 1, 2, (2, 1), kernel))

    def act_make(impl):
        x = torch.randn(batch, channels, res, res, device=device, dtype=dtype, requires_grad=backward)
        b = torch.randn(channels, device=device, dtype=dtype, requires_grad=backward)
        fn = _compiled(ops.fused_leaky_relu_ref) if impl == "compile" else ops.fused_leaky_relu
        kw = {} if impl == "compile" else {"impl": impl}

        def run():
            y = fn(x, b, 0.2, 2 ** 0.5, **kw)
            if backward:
                y.sum().backward()
            return y
        return run
    cases.append(_Case("bias + leaky ReLU", f"{batch}x{channels}x{res}x{res}", act_make))
    return cases


_COMPILED: Dict[Callable, Callable] = {}


def _compiled(fn):
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=False)
    return _COMPILED[fn]


def _generator_case(device, dtype, size: int, batch: int, backward: bool) -> _Case:
    from hairlib.nets.stylegan2 import Generator

    torch.manual_seed(0)
    g = Generator(size, 512, 8, 2).to(device=device, dtype=dtype).eval()
    if not backward:
        g.requires_grad_(False)
    z = torch.randn(batch, 512, device=device, dtype=dtype)

    def make(impl):
        if impl == "compile":
            return None  # whole-network compile is out of scope for an ops benchmark

        def run():
            with ops.use_impl(impl):
                if backward:
                    g(z, space="z").square().mean().backward()
                else:
                    with torch.no_grad():
                        g(z, space="z")
        return run
    return _Case(f"StyleGAN2 G {size}px forward" + (" + backward" if backward else ""), f"batch {batch}", make)


def bench_ops(device: Optional[str] = None, *, quick: bool = False, compile: bool = True,
              backward: bool = True, progress: bool = True) -> List[dict]:
    """Time every op (and the generator) with every backend available on ``device``.

    Returns rows: {case, shape, pass, backend, ms, vs_ref, auto_choice}. On CPU the shapes are
    smaller (StyleGAN2 at 256 px) so that the run stays short; on CUDA they are 1024 px ones.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float32
    on_gpu = dev.type == "cuda"
    backends = ["ref"]
    if compile:
        backends.append("compile")
    if on_gpu:
        if _build._import_cuda_module("upfirdn2d_cuda").available():
            backends.append("cuda")
        backends.append("auto")
    if on_gpu:
        res, batch, channels, gsize = (256, 4, 64, 1024) if not quick else (128, 2, 32, 256)
    else:
        res, batch, channels, gsize = (128, 2, 32, 256) if not quick else (32, 1, 16, 64)
    repeats = 3 if quick else 10
    rows = []
    passes = [False] + ([True] if backward else [])
    jobs = [(c, bw) for bw in passes for c in _op_cases(dev, dtype, res, batch, channels, bw)]
    jobs += [(_generator_case(dev, dtype, gsize, 1 if quick else batch, bw), bw) for bw in passes]
    try:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs) * len(backends), desc="bench ops", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = None
    for case, bw in jobs:
        timings = {}
        for be in backends:
            if bar is not None:
                bar.set_postfix_str(f"{case.name[:24]} [{be}]")
            try:
                fn = case.make(be)
                if fn is not None:
                    timings[be] = time_fn(fn, dev, repeats=repeats)
            except Exception as e:  # a backend that cannot run is reported, not fatal
                timings[be] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
            if bar is not None:
                bar.update(1)
        ref = timings.get("ref")
        numeric = {k: v for k, v in timings.items() if isinstance(v, float) and k != "auto"}
        fastest = min(numeric, key=numeric.get) if numeric else None
        for be, ms in timings.items():
            rows.append({
                "case": case.name, "shape": case.shape, "pass": "fwd+bwd" if bw else "fwd", "backend": be,
                "ms": ms, "vs_ref": (ref / ms) if isinstance(ms, float) and isinstance(ref, float) else None,
                "fastest": fastest,
            })
    if bar is not None:
        bar.close()
    for r in rows:
        r["device"] = device_name(dev)
    return rows


def format_table(rows: List[dict]) -> str:
    """Backends as columns, cases as rows: 'ms (speed-up vs ref)'."""
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    keys = list(dict.fromkeys((r["case"], r["shape"], r["pass"]) for r in rows))
    cell = {}
    for r in rows:
        ms = r["ms"]
        cell[(r["case"], r["shape"], r["pass"], r["backend"])] = (
            f"{ms:9.2f} ({r['vs_ref']:.2f}x)" if isinstance(ms, float) else str(ms)[:18])
    header = ["case", "input", "pass"] + [f"{b} ms (x ref)" for b in backends]
    lines = [header]
    for k in keys:
        lines.append([k[0], k[1], k[2]] + [cell.get(k + (b,), "-") for b in backends])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    if rows:
        out.insert(0, f"device: {rows[0]['device']}; torch {torch.__version__}")
    return "\n".join(out)


def _write_rows(rows: List[dict], path: Path, fields: List[str], fmt: str) -> Path:
    """Atomic CSV of ``rows`` (floats formatted with ``fmt``)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (format(v, fmt) if isinstance(v, float) else v) for k, v in r.items()})
    return path


def write_csv(rows: List[dict], path: Path) -> Path:
    return _write_rows(rows, path, ["device", "case", "shape", "pass", "backend", "ms", "vs_ref", "fastest"], ".4f")


# ----------------------------------------------------------------------------------------------
# Editing methods

# The StyleCLIP paper's timings (Patashnik et al. 2021: optimisation, mapper and global-direction
# inference, global-direction pre-processing), measured by the authors on one NVIDIA GPU.
PAPER_SECONDS = {"optimize": 98.0, "mapper": 0.075, "global": 0.072, "global pre-processing": 4 * 3600.0}


def bench_edit(world, *, quick: bool = False, progress: bool = True) -> List[dict]:
    """Time per edit of each StyleCLIP method on ``world``'s device, beside the paper's numbers.

    optimisation: one image at the paper's 300 steps and settings (``quick``: 40, the authors'
    Colab), then at the world's own settings where they differ;
    mapper and global-direction inference: median of repeats for one image (a mapper of random
    weights when the world ships none: the time does not depend on the weights); global
    pre-processing: this world's configuration, and the same per (channel, image) cost
    extrapolated to the paper's 100 images per channel."""
    from dataclasses import replace

    from hairlib.methods.global_dir import GlobalDirections, global_edit
    from hairlib.methods.mapper import mapper_edit
    from hairlib.methods.optimize import OptimizeConfig, optimize
    from hairlib.nets.mappers import LevelsMapper

    dev = world.device
    rows = []
    w = world.sample(1, seed=0)
    steps = 40 if quick else 300
    t0 = time.perf_counter()
    optimize(world, w, "a face with curly hair", OptimizeConfig(steps=steps), progress=progress)
    rows.append({"method": "optimize", "what": f"{steps} steps, 1 image", "seconds": time.perf_counter() - t0})
    cfg = world.settings.optimize
    if cfg != OptimizeConfig():  # the world's own settings (mini: 100 steps, 8 augmented views)
        cfg = replace(cfg, steps=min(cfg.steps, steps)) if quick else cfg
        t0 = time.perf_counter()
        optimize(world, w, "a face with curly hair", cfg, progress=progress)
        rows.append({"method": "optimize", "what": f"{world.name} settings: {cfg.steps} steps, {cfg.augment} views, 1 image",
                     "seconds": time.perf_counter() - t0})
    mapper = LevelsMapper(world.generator.num_ws, world.generator.style_dim).to(dev)
    ms = time_fn(lambda: mapper_edit(world, w, "x", mapper=mapper), dev, repeats=5 if quick else 20)
    rows.append({"method": "mapper", "what": "inference, 1 image", "seconds": ms / 1e3})
    gcfg = world.settings.global_preprocess
    if quick:
        gcfg = replace(gcfg, n_images=2, n_stats=min(gcfg.n_stats, 4096))
    t0 = time.perf_counter()
    gd = GlobalDirections.compute(world, gcfg, progress=progress)
    pre = time.perf_counter() - t0
    rows.append({"method": "global pre-processing", "what": f"{sum(gd.channels)} channels x {gcfg.n_images} images",
                 "seconds": pre})
    if gcfg.n_images != 100:
        rel = gd.meta["seconds_relevance"]
        est = gd.meta["seconds_stats"] + rel * 100 / gcfg.n_images
        rows.append({"method": "global pre-processing", "what": "same, extrapolated to 100 images",
                     "seconds": est})
    ms = time_fn(lambda: global_edit(world, w, "a face with curly hair", directions=gd, progress=False), dev,
                 repeats=5 if quick else 20)
    rows.append({"method": "global", "what": "inference, 1 image", "seconds": ms / 1e3})
    for r in rows:
        paper = PAPER_SECONDS.get(r["method"])
        r["paper_seconds"] = paper
        r["speedup_vs_paper"] = paper / r["seconds"] if paper else None
        r["device"] = device_name(dev)
        r["world"] = f"{world.name} ({world.resolution} px)"
    return rows


def format_edit_table(rows: List[dict]) -> str:
    def fmt(s):
        if s is None:
            return "-"
        return f"{s * 1e3:.1f} ms" if s < 1 else (f"{s:.1f} s" if s < 600 else f"{s / 3600:.2f} h")
    lines = [["method", "what", "this device", "paper", "x paper"]]
    for r in rows:
        lines.append([r["method"], r["what"], fmt(r["seconds"]), fmt(r["paper_seconds"]),
                      f"{r['speedup_vs_paper']:.1f}x" if r["speedup_vs_paper"] else "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    out = ["  ".join(v.ljust(wd) for v, wd in zip(line, widths)) for line in lines]
    out.insert(1, "  ".join("-" * wd for wd in widths))
    if rows:
        out.insert(0, f"world: {rows[0]['world']}; device: {rows[0]['device']}; torch {torch.__version__}")
    return "\n".join(out)


def write_edit_csv(rows: List[dict], path: Path) -> Path:
    return _write_rows(rows, path, ["world", "device", "method", "what", "seconds", "paper_seconds",
                                    "speedup_vs_paper"], ".6g")


# ----------------------------------------------------------------------------------------------
# Optimisation through a frozen generator

def bench_invert(world, *, batches=(1, 8, 32), quick: bool = False) -> List[dict]:
    """One step of an optimisation through ``world``'s frozen generator (the synthesis forward
    and the gradient with respect to W+, as inversion, StyleCLIP optimisation and the edit
    networks' training take it) per modulated-convolution execution, side by side: rosinality's
    grouped convolution ("reference"), what the generator picks ("auto": split for a batch) and,
    on a CPU with AMX-BF16, the edit networks' training execution ("auto, bf16": the synthesis
    under bf16 autocast, ``World.generate(fast=True)``)."""
    from hairlib import ops

    G = world.generator.eval()
    device = torch.device(world.device)
    modes = [("reference", "reference", False), ("auto", "auto", False)]
    if ops.training_dtype(device) == torch.bfloat16:
        modes.append(("auto, bf16", "auto", True))
    rows = []
    for batch in batches[:2] if quick else batches:
        wplus = world.sample(batch, seed=0)
        per = {}
        for name, mode, fast in modes:
            G.set_execution(mode)
            w = wplus.clone().requires_grad_(True)

            def run():
                return torch.autograd.grad(world.generate(w, fast=fast).square().mean(), w)
            per[name] = time_fn(run, device, warmup=1, repeats=2 if quick else 5)
        G.set_execution("auto")
        for mode, ms in per.items():
            rows.append({"world": world.name, "device": device_name(device), "batch": batch, "execution": mode,
                         "ms": ms, "ms_per_image": ms / batch, "speedup": per["reference"] / ms})
    return rows


def format_invert_table(rows: List[dict]) -> str:
    lines = [f"world: {rows[0]['world']}; device: {rows[0]['device']}; torch {torch.__version__}" if rows else "",
             "batch  execution   ms/step  ms/image  speedup"]
    for r in rows:
        lines.append(f"{r['batch']:<5}  {r['execution']:<10}  {r['ms']:7.1f}  {r['ms_per_image']:8.1f}  {r['speedup']:.2f}x")
    return "\n".join(lines)


def write_invert_csv(rows: List[dict], path: Path) -> Path:
    return _write_rows(rows, path, ["world", "device", "batch", "execution", "ms", "ms_per_image", "speedup"], ".4g")


# ----------------------------------------------------------------------------------------------
# Training step

def _train_arch():
    from hairlib.nets.stylegan2 import StyleGAN2Config

    # the mini world's generator with its channel cap raised to 128 and a 128-d style:
    # channels 128 at 4-16 px, 64 at 32 px, 32 at 64 px
    return StyleGAN2Config(size=64, style_dim=128, n_mlp=4, channel_multiplier=0.125, channel_max=128)


TRAIN_ARCH = _train_arch()
# the same with 128 channels at every resolution (the default multiplier, capped at 128): four
# times the convolution work at 32 px, sixteen at 64 px, where bf16 matrix units pay most
WIDE_TRAIN_ARCH = TRAIN_ARCH.__class__(size=64, style_dim=128, n_mlp=4, channel_multiplier=2, channel_max=128)
_QUICK_ARCH = TRAIN_ARCH.__class__(size=16, style_dim=32, n_mlp=2, channel_multiplier=0.125, channel_max=32)

TRAIN_STEP_TIMED = ("one train_gan iteration without lazy regularisation: D step (fakes from G under no_grad, "
                    "D logistic loss fwd+bwd on reals and fakes, Adam step), G step (style mixing, G non-saturating "
                    "loss fwd+bwd through D, Adam step), EMA update; data sampling not included")


def pick_threads(candidates: Optional[List[int]] = None) -> int:
    """The intra-op thread count that runs a bf16 convolution fastest on this CPU now.

    Candidates: every core this process may use, half of them, one. On a machine whose cores
    another process keeps busy, OpenMP threads that wait for a descheduled peer make every
    parallel region slow, and fewer threads win; on an idle one, all cores win."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    candidates = candidates or sorted({cores, max(1, cores // 2), 1}, reverse=True)
    if len(candidates) == 1:
        return candidates[0]
    old = torch.get_num_threads()
    x = torch.randn(16, 64, 32, 32).to(torch.bfloat16, memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3).to(torch.bfloat16)
    best, best_ms = candidates[0], float("inf")
    try:
        for n in candidates:
            torch.set_num_threads(n)
            ms = time_fn(lambda: torch.nn.functional.conv2d(x, w, padding=1), torch.device("cpu"), warmup=2, repeats=7)
            if ms < best_ms * 0.9:  # fewer threads must win clearly
                best, best_ms = n, ms
    finally:
        torch.set_num_threads(old)
    return best


def bench_train(device: Optional[str] = None, *, quick: bool = False, arch=None, batch: int = 16,
                repeats: Optional[int] = None, r1: bool = True, intermediate: bool = True,
                threads: Optional[int] = None, progress: bool = True) -> List[dict]:
    """Time one StyleGAN2 G+D training step per execution, in one process, interleaved.

    What is timed (``hairlib.train.gan.GANStep.step``): one train_gan iteration without lazy
    regularisation (D step: fakes from G under no_grad, D logistic loss forward + backward on
    reals and fakes, Adam step; G step: style mixing, non-saturating loss forward + backward
    through G and D, Adam step; EMA update). Reals are one fixed batch (no data sampling).
    Rows: the reference execution (today's: fp32, grouped modulated convolutions, reference ops,
    D twice, for-loop Adam), the fast execution in fp32, and where this CPU has AMX-BF16 the
    fast execution in bf16 without hairlib's CPU kernels and the fast execution itself (what
    train_gan uses); without ``intermediate``, only the first and the last. With ``r1``, the
    reference and the fast execution again with an R1 penalty every step (fp32 double
    backward; train_gan's is lazy, every 16th step). ``arch``: default ``TRAIN_ARCH`` (a tiny
    one with ``quick``).
    ``threads``: intra-op threads for the run (default: ``pick_threads``, all cores unless
    another process keeps them busy).

    Every variant starts from the same weights; each timing round runs one step of every
    variant in turn, so that a busy machine slows them alike. Returns rows: {variant,
    execution, what, ms (median), ms_min, images_per_s (batch * steps/s), speedup (reference
    median / median), arch, batch, device, threads}.
    """
    from dataclasses import replace

    from hairlib.nets.stylegan2 import Discriminator, Generator
    from hairlib.train.gan import GANStep, GANTrainConfig, StepExecution, make_optimizers

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    arch = arch or (_QUICK_ARCH if quick else TRAIN_ARCH)
    batch = 4 if quick and batch == 16 else batch
    repeats = repeats or (3 if quick else 12)
    old_threads = torch.get_num_threads()
    if threads is None and dev.type == "cpu":
        threads = pick_threads()
    if threads:
        torch.set_num_threads(threads)
    fast = StepExecution.fast(dev)
    fp32 = replace(fast, dtype=torch.float32)
    variants = [("reference", StepExecution.reference(), None), ("fast, fp32", fp32, None)]
    if fast.dtype != torch.float32:
        variants += [("fast, without hairlib CPU kernels", fast, "ref"), ("fast", fast, None)]
    if not intermediate:
        variants = [variants[0], variants[-1]]
    base = GANTrainConfig(arch=arch, batch=batch, r1=0.0, path_regularize=0.0, mixing=0.9, seed=0)
    cases = [(name, ex, impl, base, "G+D step") for name, ex, impl in variants]
    if r1:
        with_r1 = replace(base, r1=10.0, d_reg_every=1)
        cases += [(name + " + R1", ex, impl, with_r1, "G+D step + R1 (fp32) every step")
                  for name, ex, impl in (variants[0], variants[-1])]

    torch.manual_seed(0)
    real = torch.rand(batch, 3, arch.size, arch.size, device=dev) * 2 - 1
    init_g, init_d = Generator(arch).state_dict(), Discriminator(arch).state_dict()
    runners = []
    for name, ex, impl, cfg, what in cases:
        G, D, G_ema = Generator(arch).to(dev), Discriminator(arch).to(dev), Generator(arch).to(dev)
        G.load_state_dict(init_g)
        D.load_state_dict(init_d)
        G_ema.load_state_dict(init_g)
        G_ema.eval().requires_grad_(False)
        g_opt, d_opt = make_optimizers(G, D, cfg, ex)
        runner = GANStep(G, D, g_opt, d_opt, cfg, ex, torch.Generator().manual_seed(0), dev, G_ema=G_ema)
        runners.append((name, ex, impl, cfg, what, runner))

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def run(runner, impl, index):
        with ops.use_impl(impl) if impl else contextlib.nullcontext():
            runner.step(real, index, {})
        sync()

    try:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(runners) * (2 + repeats), desc="bench train", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = None
    times = {name: [] for name, *_ in runners}
    try:
        for name, ex, impl, cfg, what, runner in runners:  # warm-up (and the CPU kernels' first build)
            for i in range(2):
                run(runner, impl, i + 1)
                if bar is not None:
                    bar.update(1)
        for r in range(repeats):
            for name, ex, impl, cfg, what, runner in runners:
                t0 = time.perf_counter()
                run(runner, impl, r + 3)
                times[name].append((time.perf_counter() - t0) * 1e3)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        torch.set_num_threads(old_threads)
    rows = []
    ref = {w: statistics.median(times[n]) for n, _, _, _, w, _ in runners if n.startswith("reference")}
    for name, ex, impl, cfg, what, runner in runners:
        ms = statistics.median(times[name])
        rows.append({
            "variant": name, "execution": ex.describe() + (" (ops: PyTorch reference)" if impl == "ref" else ""),
            "what": what, "ms": ms, "ms_min": min(times[name]), "images_per_s": batch * 1e3 / ms,
            "speedup": ref[what] / ms, "batch": batch, "repeats": repeats,
            "threads": threads or torch.get_num_threads(),
            "arch": f"{arch.size} px, channels {dict(sorted(arch.channels.items()))}, style {arch.style_dim}, "
                    f"mapping {arch.n_mlp} layers",
            "device": device_name(dev) if dev.type == "cuda" else
            f"CPU ({platform.processor() or platform.machine()}, {threads} threads, "
            f"AMX-BF16 {'yes' if ops.has_amx_bf16() else 'no'})",
        })
    return rows


def format_train_table(rows: List[dict]) -> str:
    """Per architecture, one line per variant: ms per step (median, min), images/s, speed-up
    over the reference."""
    if not rows:
        return ""
    r0 = rows[0]
    out = [f"device: {r0['device']}; torch {torch.__version__}",
           f"timed: {TRAIN_STEP_TIMED}",
           f"median of {r0['repeats']} interleaved steps per variant (each round runs every variant once)"]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        group = [r for r in rows if r["arch"] == arch]
        lines = [["variant", "what", "ms/step (median)", "min", "images/s", "x reference"]]
        for r in group:
            lines.append([r["variant"], r["what"], f"{r['ms']:.1f}", f"{r['ms_min']:.1f}", f"{r['images_per_s']:.1f}",
                          f"{r['speedup']:.2f}x"])
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        table = ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines]
        table.insert(1, "  ".join("-" * w for w in widths))
        out += ["", f"arch: {arch}; batch {group[0]['batch']}"] + table
    out.append("")
    described = dict.fromkeys(f"{r['variant']}: {r['execution']}" for r in rows if not r["variant"].endswith("+ R1"))
    out += list(described)
    out.append("Shared machines make single timings noisy: compare rows of one run, not runs.")
    return "\n".join(out)


def write_train_csv(rows: List[dict], path: Path) -> Path:
    return _write_rows(rows, path, ["device", "arch", "batch", "threads", "repeats", "variant", "execution", "what",
                                    "ms", "ms_min", "images_per_s", "speedup"], ".4g")
