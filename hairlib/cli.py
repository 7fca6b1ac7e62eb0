"""The ``hairlib`` command line: a thin caller of the library.

    hairlib info                      device, ops backend, versions, which weights are present
    hairlib fetch NAME|all            download ffhq-world checkpoints into the cache (checksummed)
    hairlib bench ops|edit|train|invert [--quick]  ops backends / editing methods / a StyleGAN2 G+D step /
                                       an optimisation step through the frozen generator, timed here
    hairlib demo                      the mini world offline: renders, masks, ground-truth edits
    hairlib edit --text T [--image I] --method optimize|global|mapper --out O.png
    hairlib edit --method hairclip [--hairstyle T | --hairstyle-ref IMG] [--color T | --color-ref IMG]
    hairlib edit --method maniclip --text "she has red hair, eyeglasses"   several attributes at once
    hairlib train mapper --text T     a StyleCLIP mapper for one prompt (resumable)
    hairlib train hairclip            HairCLIP's conditional hair mapper (resumable)
    hairlib train maniclip            ManiCLIP's sentence editor (resumable)
    hairlib eval [--method all] [--n 64]  success / preservation / identity / PSNR table per method

Errors the user can fix (missing weights, bad input) print one paragraph and exit with code 2;
they never show a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import List, Optional

from dataclasses import replace

import hairlib
from hairlib import bench, ops, viz, weights
from hairlib.atomic import atomic_path, write_text
from hairlib.demo import run_demo
from hairlib.images import read_image
from hairlib.ops.cpu import has_amx_bf16
from hairlib.evaluate import (EDIT_TASKS, HAIR_TASKS, SENTENCE_COLUMNS, SENTENCE_METHODS, TRUTH_COLUMNS, evaluate,
                              evaluate_hairclip_grid, evaluate_references, evaluate_sentences, evaluate_truth,
                              format_changes, format_sentence_table, format_table, format_truth_table, summarize,
                              summarize_grid)
from hairlib.methods import METHODS
from hairlib.methods.hairclip import save_hair_mapper, train_hairclip
from hairlib.methods.maniclip import authors_masks, save_maniclip, train_maniclip
from hairlib.methods.mapper import save_mapper, slug, train_mapper
from hairlib.methods.settings import resolve
from hairlib.train.parallel import Parallel
from hairlib.weights import WeightsMissingError

__all__ = ["main"]

EXIT_USAGE = 2


class UserError(Exception):
    """A problem with the user's input or environment: printed without a traceback, exit 2."""


def _versions() -> List[str]:
    import platform

    rows = [f"python {platform.python_version()}"]
    for mod in ("torch", "torchvision", "open_clip", "numpy", "PIL", "safetensors", "dlib"):
        try:
            m = importlib.import_module(mod)
            rows.append(f"{mod} {getattr(m, '__version__', '?')}")
        except Exception:
            rows.append(f"{mod} (not installed)")
    return rows


def cmd_info(args) -> int:
    import torch

    print(f"hairlib {hairlib.__version__}")
    print("versions: " + ", ".join(_versions()))
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        print(f"device:   cuda ({', '.join(names)}); torch built with CUDA {torch.version.cuda}")
    else:
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
        print(f"device:   cpu ({torch.get_num_threads()} threads; no CUDA device; torch {build})")
    rep = ops.backend_report()
    chosen = "reference (PyTorch)" if not torch.cuda.is_available() or rep["requested"] == "ref" else \
        "fastest of CUDA kernel and reference, measured per shape" if rep["requested"] == "auto" else "CUDA kernels"
    print(f"ops:      HAIRLIB_OPS={rep['requested']} -> {chosen}")
    for op in ("upfirdn2d", "bias_act"):
        print(f"          {op}: {rep[op]}")
    amx = "AMX-BF16: bf16 training path" if has_amx_bf16() else "no AMX-BF16: training runs in fp32"
    print(f"          CPU kernels (training): {rep['cpu_ops']}; {amx}")
    _print_weights()
    _print_mini()
    _print_align()
    return 0


def _print_weights() -> None:
    try:
        rows = weights.status()
        print(f"weights:  cache {weights.cache_dir()}")
        missing = []
        for r in rows:
            mark = "ok     " if r["present"] else "missing"
            notes = ([] if r.get("pinned", True) else ["no published checksum"]) + (["optional"] if r.get("optional") else [])
            note = f"  ({', '.join(notes)})" if notes else ""
            print(f"          [{mark}] {r['name']:<26} {r['filename']}{note}")
            if not r["present"] and not r.get("optional"):
                missing.append(r["name"])
        if missing:
            print(f"          {len(missing)} missing for the ffhq world: `hairlib fetch all` "
                  f"(or `hairlib fetch NAME`) downloads them; the mini world needs none.")
    except Exception as e:  # info must never crash
        print(f"weights:  registry unavailable ({type(e).__name__}: {e})")


def _print_mini() -> None:
    wdir = Path(__file__).resolve().parent / "mini" / "weights"
    files = sorted(wdir.glob("*.safetensors")) if wdir.is_dir() else []
    if files:
        total = sum(f.stat().st_size for f in files) / 2 ** 20
        print(f"mini:     {len(files)} shipped weight files ({total:.1f} MB) in {wdir}")
    else:
        print("mini:     no mini-world weights shipped yet (hairlib/mini/weights/ is empty)")


def _print_align() -> None:
    try:
        import dlib  # noqa: F401
        have_dlib = True
    except Exception:
        have_dlib = False
    state = "available" if have_dlib else "missing (pip install 'hairlib[align]')"
    print(f"align:    dlib {state}")


def cmd_fetch(args) -> int:
    return weights.main_fetch(args.names)


def cmd_bench(args) -> int:
    if args.target == "train":
        rows = bench.bench_train(args.device, quick=args.quick)
        if not args.quick:  # the same step with 128 channels at every resolution, for scale
            rows += bench.bench_train(args.device, arch=bench.WIDE_TRAIN_ARCH, r1=False, intermediate=False,
                                      repeats=5, threads=rows[0]["threads"])
        fmt, write, name = bench.format_train_table, bench.write_train_csv, "train-{dev}.csv"
    elif args.target in ("edit", "invert"):
        world = _load_world_or_explain(args.world, args.device or "cpu")
        run, fmt, write = {"edit": (bench.bench_edit, bench.format_edit_table, bench.write_edit_csv),
                           "invert": (bench.bench_invert, bench.format_invert_table, bench.write_invert_csv)}[args.target]
        rows, name = run(world, quick=args.quick), f"{args.target}-{args.world}-{{dev}}.csv"
    else:
        rows = bench.bench_ops(args.device, quick=args.quick, compile=not args.no_compile,
                               backward=not args.no_backward)
        fmt, write, name = bench.format_table, bench.write_csv, "ops-{dev}.csv"
    print(fmt(rows))
    if args.out:
        dev = "cuda" if "cpu" not in rows[0]["device"].lower() else "cpu"
        print(f"wrote {write(rows, Path(args.out) / name.format(dev=dev))}")
    return 0


def _load_world_or_explain(name: str, device: str, resolution: Optional[int] = None):
    """load_world with the user-fixable failures turned into one paragraph (exit 2)."""
    kw = {"resolution": resolution} if name == "ffhq" and resolution else {}
    try:
        return hairlib.load_world(name, device=device, **kw)
    except WeightsMissingError:
        raise  # its message names every missing file and the `hairlib fetch` commands
    except (FileNotFoundError, ValueError, ImportError) as e:
        raise UserError(f"cannot load the {name} world: {e}") from None


def _save_picture(image, out: Path) -> Path:
    """Write a PIL image atomically (a crash never leaves half a file)."""
    with atomic_path(out, keep_suffix=True) as tmp:
        image.save(tmp)
    return out


def cmd_edit(args) -> int:
    """Text-driven edit of an image (inverted first) or of sampled faces; writes a before/after grid."""
    import torch
    import torch.nn.functional as F

    if args.method not in METHODS:
        raise UserError(f"unknown method {args.method!r}; choose one of: {', '.join(METHODS)}")
    conditions = _hairclip_conditions(args)
    if args.method == "hairclip":
        if args.text:
            raise UserError("--method hairclip takes --hairstyle/--hairstyle-ref and --color/--color-ref, not --text")
        if not conditions:
            raise UserError("--method hairclip needs --hairstyle TEXT, --hairstyle-ref IMG, --color TEXT or --color-ref IMG")
    elif conditions:
        raise UserError("--hairstyle/--color/--*-ref are for --method hairclip; the other methods take --text")
    elif not (args.text or "").strip():
        raise UserError(f"--text is required for --method {args.method} (e.g. --text \"curly hair\")")
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"--out must end in .png or .jpg, got {out.name}")
    for image in [args.image, args.hairstyle_ref, args.color_ref]:
        if image is not None:
            _check_image(image)
    if args.mapper is not None and not Path(args.mapper).is_file():
        raise UserError(f"no mapper file at {args.mapper}")
    if args.editor is not None and args.method != "maniclip":
        raise UserError("--editor is for --method maniclip (the other methods: --mapper)")
    if args.editor is not None and not Path(args.editor).is_file():
        raise UserError(f"no ManiCLIP editor file at {args.editor}")
    world = _load_world_or_explain(args.world, args.device, args.resolution)
    if args.face is not None and args.image is None:
        raise UserError("--face picks a face of --image; without --image the faces are sampled")
    x = None
    if args.image is not None:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                x = world.align(args.image, face=args.face)
        except ValueError as e:  # unreadable, no face, not this world's kind of picture (hairlib.align)
            raise UserError(str(e)) from None
        for warning in caught:  # several faces, transparency: say what was done
            print(f"hairlib: note: {warning.message}", file=sys.stderr)
        w = world.invert(x, steps=args.invert_steps, progress=True)
    else:
        w = world.sample(args.n, seed=args.seed, truncation=args.truncation)
    kw = {}
    if args.method == "optimize" and args.steps:
        kw["steps"] = args.steps
    if args.method == "global":
        kw.update({k: v for k, v in (("alpha", args.alpha), ("beta", args.beta)) if v is not None})
    if args.method in ("mapper", "hairclip") and args.mapper:
        kw["mapper"] = args.mapper
    if args.method == "maniclip":  # the editor reads the untruncated w: say how the latents were drawn
        kw.update(truncation=1.0 if x is not None else args.truncation,
                  **({"editor": args.editor} if args.editor else {}))
    if args.reference is not None:
        if args.method != "hairclip" or not (args.hairstyle_ref or args.color_ref):
            raise UserError("--reference is for --method hairclip with --hairstyle-ref or --color-ref")
        kw["reference"] = args.reference
    kw.update(conditions)
    try:
        r = hairlib.edit(world, w, args.text, method=args.method, settings=args.settings, progress=True, **kw)
    except ValueError as e:
        raise UserError(str(e)) from None
    label = args.text or " + ".join([t for t in (args.hairstyle, args.color) if t] +
                                    [Path(r).name for r in (args.hairstyle_ref, args.color_ref) if r])
    # an image: what was given, what the generator makes of it, the edit; sampled faces: before, after
    rows, labels = [r.source_images, r.images], ["generated", label[:24]]
    if x is not None:
        rows, labels = [x.to(r.images.device), r.source_images, r.images], ["input", "reconstruction", label[:24]]
    if rows[0].shape[-1] > 256:
        rows = [F.interpolate(im, size=(256, 256), mode="area") for im in rows]
    scale = max(1, 128 // rows[0].shape[-1])
    _save_picture(viz.grid(rows, labels=labels, scale=scale), out)
    info = ", ".join(f"{k}={v}" for k, v in r.info.items() if k in ("channels_touched", "alpha", "beta", "steps", "groups"))
    print(f"{args.method}: {len(r)} image(s) in {r.seconds:.2f} s{' (' + info + ')' if info else ''}")
    print(f"wrote {out}")
    if args.save_latents:
        lat = r.latents if isinstance(r.latents, torch.Tensor) else {f"s{i}": s for i, s in enumerate(r.latents)}
        torch.save(lat, Path(args.save_latents))
        print(f"wrote {args.save_latents}")
    return 0


def _check_image(path) -> None:
    """Refuse, before any work, a file that is not a readable image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transparency is reported when the image is used
            read_image(path)
    except ValueError as e:
        raise UserError(str(e)) from None


def _hairclip_conditions(args) -> dict:
    """--hairstyle/--hairstyle-ref and --color/--color-ref -> hairclip_edit's keywords."""
    kw = {}
    for name in ("hairstyle", "color"):
        text, ref = getattr(args, name), getattr(args, f"{name}_ref")
        if text is not None and ref is not None:
            raise UserError(f"give --{name} or --{name}-ref, not both")
        if text is not None and not text.strip():
            raise UserError(f"--{name} is empty")
        if text is not None or ref is not None:
            kw[name] = text.strip() if text is not None else Path(ref)
    return kw


def cmd_train(args) -> int:
    """hairlib train mapper --text ... | hairlib train hairclip | maniclip: resumable training runs."""
    if args.what == "hairclip":
        return _train_hairclip(args)
    if args.what == "maniclip":
        return _train_maniclip(args)

    if not (args.text or "").strip():
        raise UserError("--text is required, e.g. hairlib train mapper --world mini --text \"afro hairstyle\"")
    par = _parallel()
    world = _load_world_or_explain(args.world, par.device(args.device), args.resolution)
    latents = _read_latents(args.latents)
    groups = ("coarse", "medium") if args.no_fine else ("coarse", "medium", "fine")
    cfg = replace(resolve(world, args.settings).mapper, groups=groups,
                  **({"steps": args.steps} if args.steps else {}), **({"batch": args.batch} if args.batch else {}))
    out_dir = Path(args.out) / f"{world.name}-{slug(args.text)}"
    try:
        m = train_mapper(world, args.text, cfg, out_dir, latents=latents, progress=par.is_main, parallel=par)
    except ValueError as e:
        raise UserError(str(e)) from None
    if par.is_main:
        print(f"wrote {save_mapper(m, out_dir / f'{slug(args.text)}.safetensors', text=args.text)}")
    return 0


def _parallel():
    """One process, or this one's place among those ``accelerate launch`` started."""
    return Parallel()


def _read_latents(path):
    if not path:
        return None
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read latents {path}: {e}") from None


def _train_hairclip(args) -> int:
    if args.text:
        raise UserError("hairlib train hairclip takes no --text: it learns every hairstyle and colour at once")
    par = _parallel()
    world = _load_world_or_explain(args.world, par.device(args.device), args.resolution)
    latents = _read_latents(args.latents)
    cfg = replace(resolve(world, args.settings).hairclip, **({"steps": args.steps} if args.steps else {}),
                  **({"batch": args.batch} if args.batch else {}))
    out_dir = Path(args.out if args.out != "runs/mappers" else "runs/hairclip") / world.name
    try:
        m = train_hairclip(world, cfg, out_dir, latents=latents, progress=par.is_main, parallel=par)
    except ValueError as e:
        raise UserError(str(e)) from None
    if par.is_main:
        print(f"wrote {save_hair_mapper(m, out_dir / 'hairclip.safetensors')}")
    return 0


def _train_maniclip(args) -> int:
    if args.text or args.latents or args.no_fine:
        raise UserError("hairlib train maniclip takes no --text, --latents or --no-fine: it samples faces and "
                        "group-sampled sentences (the authors' training)")
    par = _parallel()
    world = _load_world_or_explain(args.world, par.device(args.device), args.resolution)
    cfg = replace(resolve(world, args.settings).maniclip, **({"steps": args.steps} if args.steps else {}),
                  **({"batch": args.batch} if args.batch else {}))
    out_dir = Path(args.out if args.out != "runs/mappers" else "runs/maniclip") / world.name
    try:
        masks = authors_masks(world.device) if world.name == "ffhq" else None  # their BiSeNet, as their train.py
        editor = train_maniclip(world, cfg, out_dir, progress=par.is_main, parallel=par, masks=masks)
    except ValueError as e:
        raise UserError(str(e)) from None
    if par.is_main:
        print(f"wrote {save_maniclip(editor, out_dir / 'maniclip.safetensors')}")
    return 0


def cmd_demo(args) -> int:
    import time

    t0 = time.time()
    paths = run_demo(args.out, seed=args.seed)
    for name, path in paths.items():
        print(f"wrote {path}")
    print(f"demo done in {time.time() - t0:.1f} s (mini world, offline)")
    return 0


def cmd_eval(args) -> int:
    """Each method on the same sampled faces and hair/face edits: a markdown table and a CSV."""
    if args.sentences and args.truth:
        raise UserError("--sentences and --truth are two evaluations: run them one at a time")
    if args.sentences:
        return _eval_sentences(args)
    if args.truth:
        return _eval_truth(args)
    if args.method == "maniclip" or args.editor or args.name:
        raise UserError("--method maniclip, --editor and --name go with --sentences (ManiCLIP edits by sentence)")
    methods = ["hairclip", "global", "mapper", "optimize"] if args.method == "all" else [args.method]
    tasks = HAIR_TASKS if args.hair_only else EDIT_TASKS
    if args.n < 1:
        raise UserError("--n must be at least 1")
    world = _load_world_or_explain(args.world, args.device, args.resolution)
    out = Path(args.out) if args.out else None
    # a partial run (one method, the hair edits only) gets its own files: it never replaces the full table
    stem = "-".join(["eval", world.name] + ([args.method] if args.method != "all" else [])
                    + (["hair"] if args.hair_only else []))
    partials = []  # each method's finished tasks, kept until the tables are written: an interrupted run resumes
    rows = []
    for m in methods:
        kw = {"steps": args.steps} if m == "optimize" and args.steps else {}
        if m == "global" and args.alpha is not None:
            kw["alpha"] = args.alpha
        resume = out / (f".{stem}.partial.json" if len(methods) == 1 else f".{stem}-{m}.partial.json") if out is not None else None
        partials += [resume] if resume is not None else []
        try:
            rows += evaluate(world, m, tasks, n=args.n, seed=args.seed, progress=True, resume=resume, **kw)
        except ValueError as e:
            raise UserError(f"{m}: {e}") from None
    table = format_table(rows + summarize(rows))
    changes = format_changes(rows)
    if changes:
        table += "\n\nWhat else the edits changed, by the attribute classifier:\n\n" + changes
    if "hairclip" in methods and world.name == "mini":  # reference images: held-out renders
        refs = evaluate_references(world, n=args.n, seed=args.seed)
        rows += refs
        table += "\n\nHairCLIP from reference images (match: the edit's label is the reference's):\n\n"
        table += format_table(refs)
    grid = None
    if "hairclip" in methods and world.name == "mini" and args.grid:
        grid_resume = out / f".{stem}-grid.partial.json" if out is not None else None
        partials += [grid_resume] if grid_resume is not None else []
        grid = evaluate_hairclip_grid(world, n=args.n, seed=args.seed, progress=True, resume=grid_resume)
        table += "\n\nHairCLIP text edits, every hairstyle x every colour at once:\n\n" + format_table(summarize_grid(grid))
    print(table)
    if out is not None:
        flat = [{k: v for k, v in r.items() if not isinstance(v, dict)} for r in rows]  # kept_by: in the .md
        fields = sorted({k for r in flat for k in r}, key=lambda k: list(flat[0]).index(k) if k in flat[0] else 99)
        print(f"wrote {bench._write_rows(flat, out / f'{stem}.csv', fields, '.4f')}")
        md = write_text(out / f"{stem}.md", table + "\n")
        print(f"wrote {md}")
        if grid is not None:
            gfields = list(grid[0])
            print(f"wrote {bench._write_rows(grid, out / f'hairclip-grid-{world.name}.csv', gfields, '.4f')}")
        for path in partials:
            path.unlink(missing_ok=True)
    return 0


def _eval_sentences(args) -> int:
    """hairlib eval --sentences: the sentence methods on held-out sentences of 1-4 attributes."""
    if args.method == "mapper" or (args.method == "hairclip" and not args.hair_only):
        raise UserError(f"--sentences runs {', '.join(SENTENCE_METHODS)} (whole sentences), and hairclip on "
                        f"--hair-only sentences; not {args.method}")
    ks = [k for k in args.attributes if k <= 2] if args.hair_only else args.attributes
    if args.editor is not None and not Path(args.editor).is_file():
        raise UserError(f"no ManiCLIP editor file at {args.editor}")
    methods = list(SENTENCE_METHODS) + (["hairclip"] if args.hair_only else []) if args.method == "all" else [args.method]
    world = _load_world_or_explain(args.world, args.device, args.resolution)
    if world.classifier is None:
        raise UserError(f"the {world.name} world has no attribute classifier: sentences are scored by one (mini world)")
    out = Path(args.out) if args.out else None
    stem = f"sentences-{world.name}" + ("-hair" if args.hair_only else "")
    rows, partials = [], []  # each method's finished k, kept until the table is written: a rerun resumes
    for m in methods:
        kw = {"steps": args.steps} if m == "optimize" and args.steps else {}
        kw.update({"editor": args.editor} if m == "maniclip" and args.editor else {})
        name = args.name if args.name and len(methods) == 1 else m
        resume = out / f".{stem}-{name}.partial.json" if out is not None else None
        partials += [resume] if resume is not None else []
        try:
            mine = evaluate_sentences(world, m, n=args.n, ks=tuple(ks), seed=args.seed, progress=True,
                                      resume=resume, hair=args.hair_only, **kw)
        except ValueError as e:
            raise UserError(f"{m}: {e}") from None
        rows += [{**r, "method": name} for r in mine]
    print(format_sentence_table(rows))
    if out is not None:
        name = stem + (f"-{rows[0]['method']}" if len(methods) == 1 else "")
        print(f"wrote {bench._write_rows(rows, out / f'{name}.csv', SENTENCE_COLUMNS, '.4f')}")
        for path in partials:
            path.unlink(missing_ok=True)
    return 0


def _eval_truth(args) -> int:
    """hairlib eval --truth: edits of inverted held-out renders against the renders of their truth."""
    if args.world != "mini":
        raise UserError("--truth needs the mini world's renderer (faces of known parameters); drop --world ffhq")
    if args.method == "maniclip" or args.editor or args.name:
        raise UserError("--truth scores one-attribute edits: --method hairclip, global, mapper or optimize")
    if args.n < 1:
        raise UserError("--n must be at least 1")
    methods = ["hairclip", "global", "mapper", "optimize"] if args.method == "all" else [args.method]
    world = _load_world_or_explain(args.world, args.device, args.resolution)
    out = Path(args.out) if args.out else None
    stem = "truth-mini" + ("" if args.method == "all" else f"-{args.method}") + ("-hair" if args.hair_only else "")
    rows, partials = [], []
    for m in methods:
        kw = {"steps": args.steps} if m == "optimize" and args.steps else {}
        if m == "global" and args.alpha is not None:
            kw["alpha"] = args.alpha
        resume = out / f".{stem}-{m}.partial.json" if out is not None else None
        partials += [resume] if resume is not None else []
        mine = evaluate_truth(world, m, HAIR_TASKS if args.hair_only else EDIT_TASKS, n=args.n,
                              progress=True, resume=resume, **kw)
        rows += mine if not rows else mine[1:]  # the inversion row once
    print(format_truth_table(rows))
    if out is not None:
        print(f"wrote {bench._write_rows(rows, out / f'{stem}.csv', TRUTH_COLUMNS, '.4f')}")
        for path in partials:
            path.unlink(missing_ok=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hairlib", description="Edit faces and hair with CLIP and StyleGAN2.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="device, ops backend, versions, weights present")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("fetch", help="download ffhq-world weights into the cache")
    s.add_argument("names", nargs="+", help="registry names, or 'all'")
    s.set_defaults(func=cmd_fetch)
    s = sub.add_parser("bench", help="benchmarks on this device")
    s.add_argument("target", choices=["ops", "edit", "train", "invert"], help="what to benchmark")
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    s.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    s.add_argument("--no-compile", action="store_true", help="skip torch.compile of the references")
    s.add_argument("--no-backward", action="store_true", help="forward only")
    s.add_argument("--out", default="runs/bench", help="folder for the CSV ('' to skip; the tracked tables: results/bench)")
    s.add_argument("--world", default="mini", choices=["mini", "ffhq"], help="bench edit / invert: which world")
    s.set_defaults(func=cmd_bench)
    s = sub.add_parser("demo", help="offline demo on the mini world: pictures in results/demo/")
    s.add_argument("--out", default="results/demo", help="output folder")
    s.add_argument("--seed", type=int, default=0, help="which faces")
    s.set_defaults(func=cmd_demo)
    s = sub.add_parser("edit", help="edit faces by text: an image (inverted first) or sampled faces")
    s.add_argument("--world", default="mini", choices=["mini", "ffhq"])
    s.add_argument("--resolution", type=int, default=None, help="ffhq world: 1024 (default) or 256")
    s.add_argument("--image", default=None, help="photo (ffhq: aligned first) or render (mini); none: sampled faces")
    s.add_argument("--face", type=int, default=None, help="--image with several faces: which (1 = the largest)")
    s.add_argument("--text", default=None, help='what to change, e.g. "curly red hair"')
    s.add_argument("--method", default="optimize", help="optimize | global | mapper | hairclip | maniclip")
    s.add_argument("--hairstyle", default=None, help='hairclip: hairstyle text, e.g. "afro hairstyle"')
    s.add_argument("--hairstyle-ref", default=None, help="hairclip: hairstyle from this reference image")
    s.add_argument("--color", default=None, help='hairclip: colour text, e.g. "purple hair"')
    s.add_argument("--color-ref", default=None, help="hairclip: hair colour from this reference image")
    s.add_argument("--reference", default=None, choices=["image", "text"],
                   help="hairclip: a reference's condition is its CLIP image embedding (the paper's) or CLIP's "
                        "zero-shot reading of it as the vocabulary's text (default: the world's; mini: text)")
    s.add_argument("--invert-steps", type=int, default=None,
                   help="--image: optimisation steps after the encoder (default: the world's; mini: 200, the most "
                        "faithful; 0: the encoder alone, blurrier but the most editable)")
    s.add_argument("--out", default="runs/edit.png", help="before/after picture (.png/.jpg)")
    s.add_argument("--n", type=int, default=4, help="sampled faces when no image is given")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--truncation", type=float, default=0.7)
    s.add_argument("--steps", type=int, default=None, help="optimize: steps (paper: 300)")
    s.add_argument("--alpha", type=float, default=None, help="global: strength (paper: 4.1)")
    s.add_argument("--beta", type=float, default=None, help="global: disentanglement threshold (paper: 0.15)")
    s.add_argument("--mapper", default=None, help="mapper/hairclip: checkpoint (ours .safetensors or the authors' .pt)")
    s.add_argument("--editor", default=None,
                   help="maniclip: editor (ours .safetensors or the authors' pretrained_edit_model.pth.tar, ffhq 256 px)")
    s.add_argument("--settings", default="world", choices=["world", "paper"],
                   help="the world's settings (default) or exactly the authors' (README, Settings)")
    s.add_argument("--save-latents", default=None, help="also save the edited latents (torch file)")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_edit)
    s = sub.add_parser("train", help="train a StyleCLIP mapper for a prompt, HairCLIP's hair mapper or ManiCLIP's editor")
    s.add_argument("what", choices=["mapper", "hairclip", "maniclip"], help="what to train")
    s.add_argument("--world", default="mini", choices=["mini", "ffhq"])
    s.add_argument("--resolution", type=int, default=None)
    s.add_argument("--text", default=None, help="mapper: the prompt")
    s.add_argument("--latents", default=None, help="W+ latents to train on (e.g. train_faces.pt); default: sampled")
    s.add_argument("--steps", type=int, default=None, help="paper: 50000 (mapper), 500000 (hairclip), 46860 (maniclip)")
    s.add_argument("--batch", type=int, default=None, help="paper: 2 (mapper), 1 (hairclip), 16 (maniclip)")
    s.add_argument("--no-fine", action="store_true", help="no fine mapper (hair and expression edits, as the paper)")
    s.add_argument("--settings", default="world", choices=["world", "paper"],
                   help="the world's settings (default) or exactly the authors' (README, Settings)")
    s.add_argument("--out", default="runs/mappers", help="run folder (resumable; hairclip: runs/hairclip; maniclip: runs/maniclip)")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_train)
    s = sub.add_parser("eval", help="score editing methods on the same faces (success, preservation, identity)")
    s.add_argument("--world", default="mini", choices=["mini", "ffhq"])
    s.add_argument("--resolution", type=int, default=None)
    s.add_argument("--method", default="all", choices=["all", "hairclip", "global", "mapper", "optimize", "maniclip"])
    s.add_argument("--n", type=int, default=64, help="sampled faces (issue: >= 64)")
    s.add_argument("--sentences", action="store_true",
                   help="held-out sentences of 1-4 attributes (ManiCLIP's task) through maniclip, optimize, global")
    s.add_argument("--attributes", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4, 5],
                   help="--sentences: how many attributes a sentence states (default: 1 2 3 4; --hair-only: 1 2)")
    s.add_argument("--truth", action="store_true",
                   help="mini: held-out renders inverted and edited, each edit against the render of its true answer "
                        "(PSNR, feature distance, hair IoU, hair colour CIEDE2000, PSNR outside the hair)")
    s.add_argument("--editor", default=None, help="--sentences: a ManiCLIP editor file (default: the world's)")
    s.add_argument("--name", default=None, help="--sentences: the method's name in the table (e.g. an ablation)")
    s.add_argument("--seed", type=int, default=1234)
    s.add_argument("--steps", type=int, default=None, help="optimize: steps")
    s.add_argument("--alpha", type=float, default=None, help="global: strength")
    s.add_argument("--hair-only", action="store_true", help="only the hair edits (HairCLIP's comparison); with "
                   "--sentences: hair-only sentences, HairCLIP among the methods")
    s.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True,
                   help="hairclip (mini): also every hairstyle x colour pair at once (a few minutes)")
    s.add_argument("--out", default="runs/eval", help="folder for the table ('' to skip; the tracked tables: "
                   "results/eval); an interrupted run keeps its finished tasks there (.eval-*.partial.json) and a "
                   "rerun resumes from them")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_eval)
    return p


def _check_writable(path: Path, folder: bool) -> None:
    """Refuse, before any work, an output that cannot be written (a missing parent is made)."""
    target = path if folder else path.parent
    if not folder and path.is_dir():
        raise UserError(f"--out {path} is a folder; give a file name, e.g. {path / 'edit.png'}")
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file; give a folder")
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the deepest folder that exists: a file must be creatable in it
    if not probe.is_dir():
        raise UserError(f"cannot write {path}: {probe} is a file, not a folder; choose another --out")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".hairlib-probe-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e} in {probe}; choose another --out") from None
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot overwrite {path} (read-only); choose another --out")


def validate(args) -> None:
    """Every argument checked before any work: counts >= 1, finite numbers in range, an existing
    device, outputs that can be written. Raises UserError naming the argument and the fix."""
    import torch

    def count(name, minimum=1):
        v = getattr(args, name, None)
        if v is not None and v < minimum:
            raise UserError(f"--{name.replace('_', '-')} must be at least {minimum}, got {v}")

    for name in ("n", "steps", "batch", "face"):
        count(name)
    count("invert_steps", 0)
    for name, lo, hi, note in (("truncation", 0.0, 1.0, "1 samples without truncation; the papers use 0.7"),
                               ("alpha", -math.inf, math.inf, "the paper's strength is 4.1; negative reverses the edit"),
                               ("beta", 0.0, 1.0, "the paper uses 0.15")):
        v = getattr(args, name, None)
        if v is not None and not (math.isfinite(v) and lo <= v <= hi):
            span = "a finite number" if math.isinf(lo) else f"a number from {lo:g} to {hi:g}"
            raise UserError(f"--{name} must be {span} ({note}), got {v}")
    if getattr(args, "resolution", None) is not None and args.resolution not in (256, 1024):
        raise UserError(f"--resolution must be 256 or 1024 (the ffhq generators), got {args.resolution}")
    device = getattr(args, "device", None)
    if device is not None:
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            raise UserError(f"--device {device!r} is not a device; use cpu or cuda (cuda:N for the N-th GPU)") from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise UserError(f"--device {device}: no CUDA GPU is available here (torch "
                                f"{'has no CUDA support' if torch.version.cuda is None else 'sees no GPU'}); use --device cpu")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise UserError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) here")
        elif dev.type != "cpu":
            raise UserError(f"--device {device}: hairlib runs on cpu or cuda")
    out = getattr(args, "out", None)
    if out and args.command in ("edit", "eval", "bench", "demo", "train"):
        _check_writable(Path(out), folder=args.command != "edit")
    if getattr(args, "save_latents", None):
        _check_writable(Path(args.save_latents), folder=False)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        validate(args)
        return args.func(args)
    except UserError as e:
        print(f"hairlib: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        if type(e).__name__ in ("WeightsMissingError", "ChecksumError", "DamagedWeightsError"):  # user-fixable
            print(f"hairlib: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        print("hairlib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
