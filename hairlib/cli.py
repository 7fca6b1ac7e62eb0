"""The ``hairlib`` command line: a thin caller of the library.

    hairlib info                      device, ops backend, versions, which weights are present
    hairlib fetch NAME|all            download ffhq-world checkpoints into the cache (checksummed)
    hairlib bench ops [--quick]       ops backends side by side on this device
    hairlib demo                      the mini world offline: renders, masks, ground-truth edits
    hairlib edit | train | eval       (filled by the method issues)

Errors the user can fix (missing weights, bad input) print one paragraph and exit with code 2;
they never show a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import List, Optional

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

    import hairlib
    import ops

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
    _print_weights()
    _print_mini()
    _print_align()
    return 0


def _print_weights() -> None:
    try:
        from hairlib import weights

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
    from hairlib import weights

    return weights.main_fetch(args.names)


def cmd_bench(args) -> int:
    from hairlib import bench

    if args.target != "ops":
        raise UserError(f"`hairlib bench {args.target}` is not available yet: the editing methods land "
                        f"with the StyleCLIP issue. Available now: `hairlib bench ops`.")
    rows = bench.bench_ops(args.device, quick=args.quick, compile=not args.no_compile,
                           backward=not args.no_backward)
    print(bench.format_table(rows))
    if args.out:
        dev = "cuda" if "cpu" not in rows[0]["device"].lower() else "cpu"
        path = bench.write_csv(rows, Path(args.out) / f"ops-{dev}.csv")
        print(f"wrote {path}")
    return 0


def cmd_demo(args) -> int:
    import time

    from hairlib.demo import run_demo

    t0 = time.time()
    paths = run_demo(args.out, seed=args.seed)
    for name, path in paths.items():
        print(f"wrote {path}")
    print(f"demo done in {time.time() - t0:.1f} s (mini world, offline)")
    return 0


def cmd_pending(args) -> int:
    raise UserError(f"`hairlib {args.command}` is not available yet in hairlib "
                    f"{__import__('hairlib').__version__}: it arrives with the mini-world and editing "
                    f"issues (see README). Available now: info, fetch, bench ops.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hairlib", description="Edit faces and hair with CLIP and StyleGAN2.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="device, ops backend, versions, weights present")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("fetch", help="download ffhq-world weights into the cache")
    s.add_argument("names", nargs="+", help="registry names, or 'all'")
    s.set_defaults(func=cmd_fetch)
    s = sub.add_parser("bench", help="benchmarks on this device")
    s.add_argument("target", choices=["ops", "edit"], help="what to benchmark")
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    s.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    s.add_argument("--no-compile", action="store_true", help="skip torch.compile of the references")
    s.add_argument("--no-backward", action="store_true", help="forward only")
    s.add_argument("--out", default="results/bench", help="folder for the CSV ('' to skip)")
    s.set_defaults(func=cmd_bench)
    s = sub.add_parser("demo", help="offline demo on the mini world: pictures in results/demo/")
    s.add_argument("--out", default="results/demo", help="output folder")
    s.add_argument("--seed", type=int, default=0, help="which faces")
    s.set_defaults(func=cmd_demo)
    for name, text in [("edit", "edit a face by text or reference"),
                       ("train", "train a mapper"), ("eval", "evaluate a method")]:
        s = sub.add_parser(name, help=text + " (coming)")
        s.set_defaults(func=cmd_pending, accepts_any=True)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_any", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except UserError as e:
        print(f"hairlib: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        if type(e).__name__ in ("WeightsMissingError", "ChecksumError"):  # hairlib.weights, user-fixable
            print(f"hairlib: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        print("hairlib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
