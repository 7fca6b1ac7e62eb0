"""hairlib's layers point one way, and no modules import each other in a circle.

    cli -> tools (evaluate, tables, viz, bench, demo) -> worlds -> methods -> training loops, inversion,
    weights -> nets -> ops and the mini world's data; recipes (hairlib.mini.train_*, build) on top.

Every import counts: at a module's head and inside functions. Run on its own with
``python -m pytest tests/test_layers.py``.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "hairlib"

# Lowest first. A module may import from its own layer or any lower one. Patterns ending in ".*"
# match a package's modules; the most specific pattern wins.
LAYERS = [
    ("base", ["hairlib._version", "hairlib.atomic", "hairlib.images", "hairlib.ops", "hairlib.ops.*", "hairlib.prompts", "hairlib.mini.vocab",
              "hairlib.mini.render", "hairlib.mini.captions", "hairlib.mini"]),
    ("nets", ["hairlib.nets", "hairlib.nets.*"]),
    ("infrastructure", ["hairlib.weights", "hairlib.metrics", "hairlib.invert", "hairlib.align", "hairlib.latents",
                        "hairlib.mini.data", "hairlib.mini.prior", "hairlib.train", "hairlib.train.*"]),
    ("methods", ["hairlib.methods", "hairlib.methods.*"]),
    ("worlds", ["hairlib.worlds", "hairlib.mini.world", "hairlib"]),
    ("tools", ["hairlib.evaluate", "hairlib.tables", "hairlib.viz", "hairlib.bench", "hairlib.demo", "hairlib.results"]),
    ("cli", ["hairlib.cli", "hairlib.__main__"]),
    ("recipes", ["hairlib.mini.*"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def layer_of(name: str) -> int:
    best, best_len = None, -1
    for i, (_, patterns) in enumerate(LAYERS):
        for pat in patterns:
            hit = (name == pat) or (pat.endswith(".*") and name.startswith(pat[:-1]))
            length = len(pat) - (1 if pat.endswith(".*") else 0)
            if hit and length > best_len:
                best, best_len = i, length
    if best is None:
        raise AssertionError(f"{name} is in no layer: add it to tests/test_layers.py LAYERS")
    return best


def imports(name: str, path: Path, known: dict) -> set:
    """The hairlib modules ``name`` imports (``from pkg import sub`` counts as ``pkg.sub`` when
    ``sub`` is a module, else as ``pkg``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                if f"{base}.{a.name}" in known:
                    out.add(f"{base}.{a.name}")
                elif base in known:
                    out.add(base)
    out.discard(name)
    return out


def graph() -> dict:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(g: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_upward_import():
    bad = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
           for a, targets in graph().items() for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_nets_do_no_io():
    """Networks are definitions: downloads and the weights registry are the world's business."""
    g = graph()
    bad = [f"{a} imports {b}" for a, t in g.items() if a.startswith("hairlib.nets") for b in t
           if b in ("hairlib.weights", "hairlib.worlds")]
    assert not bad, "\n".join(bad)


def test_runtime_imports_no_recipe():
    g = graph()
    runtime = [m for m in g if layer_of(m) < layer_of("hairlib.mini.train_clip")]
    bad = [f"{a} imports {b}" for a in runtime for b in g[a] if LAYERS[layer_of(b)][0] == "recipes"]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_cycles_and_upward_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("hairlib.cli") > layer_of("hairlib.methods.optimize") > layer_of("hairlib.nets.clip")
    assert layer_of("hairlib.mini.train_clip") > layer_of("hairlib.mini.world") > layer_of("hairlib.mini.vocab")


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
