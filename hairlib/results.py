"""README's results table, made from the tracked CSVs of ``hairlib eval`` (``results/eval/``).

    python -m hairlib.results            # prints the table
    python -m hairlib.results --write    # writes it into README.md between its markers
    python -m hairlib.results --beside results/eval/previous-generator   # two result sets side by side

A test regenerates the table and fails when README's copy differs, so the numbers people read
are the numbers the CSVs hold.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Dict, List

__all__ = ["results_table", "beside_table", "summary", "settings_table", "write_readme", "BLOCKS", "mean_of", "duration"]

ROOT = Path(__file__).resolve().parents[1]
METHODS = [("optimize", "StyleCLIP latent optimisation"), ("global", "StyleCLIP global directions"),
           ("mapper", "StyleCLIP latent mapper"), ("hairclip", "HairCLIP (text)")]
SENTENCES = [("maniclip", "ManiCLIP"), ("optimize", "StyleCLIP latent optimisation"),
             ("global", "StyleCLIP global directions")]  # hairlib eval --sentences


def _rows(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mean_of(rows, key) -> float:
    """The mean of ``key`` over ``rows`` (dicts or CSV rows; missing or empty values skipped), NaN if none."""
    vals = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    return sum(vals) / len(vals) if vals else float("nan")


def duration(seconds) -> str:
    """Seconds as people read them: "34 ms", "7.2 s", "15.0 min", "1.5 h" ("" for None or NaN)."""
    if seconds is None or seconds != seconds:
        return ""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1e3:.0f} ms"


def summary(folder: Path = ROOT / "results" / "eval", world: str = "mini") -> List[Dict]:
    """The results table's rows as numbers: each method's mean over its edits, HairCLIP's
    hairstyle x colour grid, the sentence methods on held-out 3-attribute sentences."""
    out = []
    for method, title in METHODS:
        path = folder / f"eval-{world}-{method}.csv"
        if not path.exists():
            continue
        rows = [r for r in _rows(path) if r["method"] == method and not r.get("match")]
        out.append({"method": title, "edits": ", ".join(r["task"] for r in rows), "faces": rows[0]["n"],
                    "success": mean_of(rows, "success"), "kept": mean_of(rows, "preserved"),
                    "identity": mean_of(rows, "identity"), "psnr": mean_of(rows, "psnr_bg"),
                    "seconds": mean_of(rows, "seconds")})
    grid = folder / f"hairclip-grid-{world}.csv"
    if grid.exists():
        rows = _rows(grid)
        out.append({"method": "HairCLIP, every hairstyle x colour pair", "edits": f"{len(rows)} pairs",
                    "faces": rows[0]["n"], "style": mean_of(rows, "style_success"), "color": mean_of(rows, "color_success"),
                    "kept": mean_of(rows, "preserved"), "identity": mean_of(rows, "identity"),
                    "psnr": mean_of(rows, "psnr_bg"), "seconds": mean_of(rows, "seconds")})
    for method, title in SENTENCES:
        path = folder / f"sentences-{world}-{method}.csv"
        rows = [r for r in _rows(path) if r["attributes"] == "3"] if path.exists() else []
        if rows:
            out.append({"method": title, "edits": "held-out sentences of 3 attributes", "faces": rows[0]["n"],
                        "success": mean_of(rows, "reached"), "kept": mean_of(rows, "kept"),
                        "identity": mean_of(rows, "identity"), "psnr": mean_of(rows, "psnr_bg"),
                        "seconds": mean_of(rows, "seconds"), "sentences": True})
    return out


def _cells(r: Dict) -> List[str]:
    success = (f"hairstyle {r['style']:.0%}, colour {r['color']:.0%}" if "style" in r else f"{r['success']:.0%}")
    psnr = f"{r['psnr']:.1f} dB" + (" (and face)" if r.get("sentences") else "")
    return [success, f"{r['kept']:.0%}", f"{r['identity']:.2f}", psnr, duration(r["seconds"])]


HEADER = ["method", "edits", "faces", "success", "others kept", "identity", "PSNR outside hair", "time / edit"]
HEAD = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]  # a markdown table's first two lines


def results_table(folder: Path = ROOT / "results" / "eval", world: str = "mini") -> str:
    """One markdown table of ``summary``: success, others kept, identity, PSNR outside the hair
    (or outside the changed regions, for sentences), time per edit."""
    lines = list(HEAD)
    for r in summary(folder, world):
        lines.append("| " + " | ".join([r["method"], r["edits"], r["faces"], *_cells(r)]) + " |")
    return "\n".join(lines)


def beside_table(before: Path, after: Path = ROOT / "results" / "eval", world: str = "mini") -> str:
    """``results_table``'s rows of two result folders side by side ("before -> after"), rows
    matched by method (the edits listed are the after folder's; rows of one folder say so)."""
    key = lambda r: (r["method"], bool(r.get("sentences")))  # noqa: E731 - the edits may differ
    old = {key(r): r for r in summary(Path(before), world)}
    new = {key(r): r for r in summary(Path(after), world)}
    lines = list(HEAD)
    for k in list(new) + [k for k in old if k not in new]:
        a, b = old.get(k), new.get(k)
        if a and b:
            method, cells = k[0], [x if x == y else f"{x} -> {y}" for x, y in zip(_cells(a), _cells(b))]
        else:
            method, cells = f"{k[0]} ({'before' if b is None else 'after'} only)", _cells(a or b)
        lines.append("| " + " | ".join([method, (b or a)["edits"], (b or a)["faces"], *cells]) + " |")
    return "\n".join(lines)


def settings_table() -> str:
    """Every value of the mini world's settings that is not the paper's, with why."""
    from hairlib.methods.settings import MINI, MINI_REASONS, differences

    lines = ["| setting | paper | mini world | why |", "|---|---|---|---|"]
    for name, (paper, mini) in differences(MINI).items():
        why = MINI_REASONS.get(name) or MINI_REASONS.get(name.split(".")[0]) or MINI_REASONS[name.split(".")[-1]]
        lines.append(f"| `{name}` | {paper} | {mini} | {why} |")
    return "\n".join(lines)


BLOCKS = {"results": results_table, "settings": settings_table}


def markers(name: str):
    return f"<!-- {name}:begin (python -m hairlib.results --write) -->", f"<!-- {name}:end -->"


def write_readme(readme: Path = ROOT / "README.md") -> bool:
    """Put each generated table between its markers in README; True when anything changed."""
    text = old = readme.read_text()
    for name, make in BLOCKS.items():
        begin, end = markers(name)
        i, j = text.index(begin) + len(begin), text.index(end)
        text = text[:i] + "\n" + make() + "\n" + text[j:]
    if text != old:
        readme.write_text(text)
    return text != old


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="write the table into README.md")
    p.add_argument("--beside", metavar="FOLDER", help="the table of FOLDER's CSVs and results/eval's side by side")
    args = p.parse_args(argv)
    if args.beside:
        print(beside_table(Path(args.beside)))
    elif args.write:
        print("README.md " + ("updated" if write_readme() else "already up to date"))
    else:
        print(results_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
