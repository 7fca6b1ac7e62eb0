"""Replayable builds of the mini world's shipped networks: one recipe each, from named parents.

    python -m hairlib.mini.build --list                 # every build, its parents, and what ships now
    python -m hairlib.mini.build NAME [NAME ...] [--steps N] [--threads T] [--no-eval]
    python -m hairlib.mini.build NAME [NAME ...] --ship  # copy the staged files into the package

A build (``BUILDS``) is a recipe's config at the values that ship (seeds included), the shipped
networks it reads (its parents) and the files it writes. ``NAME`` trains in ``runs/build/NAME/``
(resumable: rerun to continue) and writes into the staging world ``runs/build/weights/``; its
parents are read from the staging world where a build staged them, else from the package. So a
new generator is staged first and every network that reads it is rebuilt against it before
anything ships; ``--ship`` then copies the staged files (sha256 checked) into
``hairlib/mini/weights/`` and the run's log into ``results/training/``.

Each staged ``.json`` records its lineage as data: the build, its config, each parent's sha256,
the commit and the training seconds its run's log reports. ``lineage["exact"]`` says whether the
shipped file is this build's output; the networks shipped before builds existed carry ``exact:
false`` and the commands that made them (``made_by``) until their build replaces them.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from hairlib.atomic import sha256_file, write_text
from hairlib.mini.world import WEIGHTS_DIR

STAGING = Path("runs") / "build"
LOGS = Path(__file__).resolve().parents[2] / "results" / "training"
VAL_SEED = 777  # the validation faces edit networks are scored on (``hairlib eval`` uses seed 1234)


@dataclass(frozen=True)
class Build:
    """``make(cfg, parents_dir, run_dir, evaluate, **opts) -> (model, metrics)`` trains from the
    parents in ``parents_dir`` (a weights folder; ``opts``: ``hours`` for the generator); ``export(model, metrics, cfg, dest) -> [paths]`` writes
    ``files`` (relative to a weights folder) into ``dest``."""
    name: str
    config: Any
    parents: Tuple[str, ...]
    files: Tuple[str, ...]
    make: Callable
    export: Callable


def _plain(cfg) -> Dict[str, Any]:
    d = asdict(cfg) if is_dataclass(cfg) else dict(cfg)
    return json.loads(json.dumps(d, default=list))


# ---- the recipes' adapters --------------------------------------------------------------------

def _simple(module):
    """A recipe trained on renders alone (classifier, identity, parser)."""
    def make(cfg, parents, run, evaluate, **_):
        model = module.train(cfg, run)
        return model, (module.evaluate(model) if evaluate else {})

    return make, lambda model, metrics, cfg, dest: [module.export(model, metrics, cfg, dest)]


def _clip():
    from hairlib.mini import train_clip as T

    def make(cfg, parents, run, evaluate, **_):
        from hairlib.nets.clip import CLIP, _bpe_tokenizer

        model = T.train(replace(cfg, init=str(Path(parents) / "clip.safetensors")), run)
        if not evaluate:
            return model, {}
        clip = CLIP(model.float(), _bpe_tokenizer(T.MINI_CLIP["text_cfg"]["context_length"]), name="mini-clip")
        rendered = T.heldout_renders()
        return model, {"heldout": T.zero_shot(clip, rendered=rendered),
                       "train_phrasings": T.zero_shot(clip, phrasings="train", rendered=rendered)}

    return make, lambda model, metrics, cfg, dest: [T.export(model, metrics, cfg, dest=dest)]


def _encoder():
    from hairlib.mini import train_encoder as T
    from hairlib.mini.world import load_classifier, load_generator

    def make(cfg, parents, run, evaluate, **_):
        G, clf = load_generator(parents), load_classifier(parents)
        enc = T.train(G, clf, cfg, run)
        return enc, (T.evaluate(G, enc, clf) if evaluate else {})

    return make, lambda enc, metrics, cfg, dest: [T.export(enc, metrics, cfg, dest)]


def _stylegan2():
    from hairlib.mini import eval_stylegan2 as E
    from hairlib.mini import train_stylegan2 as T
    from hairlib.mini.shipping import save_shipped
    from hairlib.mini.world import load_classifier

    def make(cfg, parents, run, evaluate, hours=None):
        """The paired recipe (a fresh run folder at the recipe's own config resumes from the run
        state kept in git, ``train_stylegan2.PACKED``); ``hours``: stop at a checkpoint after that."""
        clf = load_classifier(parents)
        T.train_paired(Path(run), cfg, classifier=clf, hours=hours, packed=T.PACKED if cfg == T.PAIRED else None)
        G, meta = T.trained_generator(run)
        metrics = {k: v for k, v in E.evaluate_generator(G, clf).items() if not k.startswith("_")} if evaluate else {}
        return (G, meta), metrics

    def export(model, metrics, cfg, dest):
        G, meta = model
        return [save_shipped("stylegan2", G, {**meta, "metrics": metrics}, dest)]

    return make, export


def _world(parents):
    import hairlib

    return hairlib.load_world("mini", weights_dir=Path(parents))


def _mapper(name: str):
    from hairlib.evaluate import EDIT_TASKS
    from hairlib.methods.mapper import save_mapper, train_mapper
    from hairlib.mini.train_mappers import MAPPERS, _scores

    text = MAPPERS[name][0]
    tasks = [t.name for t in EDIT_TASKS if t.text == text]  # scored on the edit task of its prompt

    def make(cfg, parents, run, evaluate, **_):
        world = _world(parents)
        m = train_mapper(world, text, cfg, run)
        return m, (_scores(world, "mapper", tasks, mapper=m) if evaluate else {})

    def export(m, metrics, cfg, dest):
        (Path(dest) / "mappers").mkdir(parents=True, exist_ok=True)
        return [save_mapper(m, Path(dest) / "mappers" / f"{name}.safetensors", text=text,
                            extra={"recipe": cfg.to_dict(), "scores": metrics, "scores_seed": VAL_SEED})]

    return make, export


def _hairclip():
    from hairlib.evaluate import HAIR_TASKS
    from hairlib.methods.hairclip import save_hair_mapper, train_hairclip
    from hairlib.mini.train_mappers import _scores

    def make(cfg, parents, run, evaluate, **_):
        world = _world(parents)
        m = train_hairclip(world, cfg, run)
        return m, (_scores(world, "hairclip", [t.name for t in HAIR_TASKS], mapper=m) if evaluate else {})

    def export(m, metrics, cfg, dest):  # fp16: half the size
        return [save_hair_mapper(copy.deepcopy(m).half(), Path(dest) / "hairclip.safetensors", extra={
            "recipe": asdict(cfg), "scores": metrics, "scores_seed": VAL_SEED, "dtype": "float16"})]

    return make, export


def _maniclip():
    from hairlib.evaluate import evaluate_sentences
    from hairlib.methods.maniclip import save_maniclip, train_maniclip

    def make(cfg, parents, run, evaluate, **_):
        world = _world(parents)
        editor = train_maniclip(world, cfg, run)
        if not evaluate:
            return editor, {}
        row = evaluate_sentences(world, "maniclip", n=64, ks=(3,), seed=VAL_SEED, editor=editor)[0]
        return editor, {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}

    def export(editor, metrics, cfg, dest):
        return [save_maniclip(copy.deepcopy(editor).half(), Path(dest) / "maniclip.safetensors", extra={
            "recipe": asdict(cfg), "stage": "main", "scores": metrics, "scores_seed": VAL_SEED})]

    return make, export


def _builds() -> Dict[str, Build]:
    from hairlib.methods.settings import MINI
    from hairlib.mini import train_classifier, train_clip, train_encoder, train_identity, train_parser, train_stylegan2
    from hairlib.mini.train_mappers import HAIRCLIP, MAPPER_SETTINGS, MAPPERS

    out = [
        Build("classifier", train_classifier.RECIPE, (), ("classifier.safetensors",), *_simple(train_classifier)),
        Build("identity", replace(train_identity.RECIPE, steps=1500), (), ("identity.safetensors",),
              *_simple(train_identity)),
        Build("parser", train_parser.RECIPE, (), ("parser.safetensors",), *_simple(train_parser)),
        # a new image tower against the parent CLIP's frozen text tower (which it keeps bit for bit)
        Build("clip", train_clip.SEE_CONV_OWN, ("clip",), ("clip.safetensors",), *_clip()),
        Build("stylegan2", train_stylegan2.PAIRED, ("classifier",), ("stylegan2.safetensors",), *_stylegan2()),
        Build("encoder", replace(train_encoder.RECIPE, init=""), ("stylegan2", "classifier"), ("encoder.safetensors",),
              *_encoder()),
    ]
    edit_parents = ("stylegan2", "clip", "identity", "classifier", "parser")
    for name, (_, groups) in MAPPERS.items():
        cfg = replace(MINI.mapper, groups=tuple(groups), seed=MAPPER_SETTINGS["seed"])
        out.append(Build(f"mapper-{name}", cfg, edit_parents, (f"mappers/{name}.safetensors",), *_mapper(name)))
    out.append(Build("hairclip", replace(MINI.hairclip, seed=HAIRCLIP["seed"]), edit_parents, ("hairclip.safetensors",),
                     *_hairclip()))
    out.append(Build("maniclip", MINI.maniclip, edit_parents, ("maniclip.safetensors",), *_maniclip()))
    return {b.name: b for b in out}


BUILDS: Dict[str, Build] = {}


def builds() -> Dict[str, Build]:
    if not BUILDS:
        BUILDS.update(_builds())
    return BUILDS


# ---- staging, lineage, shipping ---------------------------------------------------------------

def parents_dir(staging: Path, name: str, package: Path = WEIGHTS_DIR) -> Path:
    """``staging/NAME/parents``: a weights folder of links to the package's files, each replaced by
    the staged one where a build staged it (the folder a build's world is loaded from)."""
    staged, view = Path(staging) / "weights", Path(staging) / name / "parents"
    if view.exists():
        shutil.rmtree(view)
    files = {p.relative_to(package): p for p in Path(package).rglob("*") if p.is_file()}
    if staged.exists():
        files.update({p.relative_to(staged): p for p in staged.rglob("*") if p.is_file()})
    for rel, src in files.items():
        (view / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src.resolve(), view / rel)
    return view


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def lineage(build: Build, cfg, parents: Path) -> Dict[str, Any]:
    return {"build": build.name, "command": f"python -m hairlib.mini.build {build.name}", "exact": True,
            "config": _plain(cfg), "parents": {p: sha256_file(Path(parents) / f"{p}.safetensors") for p in build.parents},
            "commit": _commit(), "machine": machine()}


def machine() -> Dict[str, Any]:
    """The CPU a build ran on (its seconds, and its edit networks' training precision, depend on it:
    ``World.generate(fast=True)`` runs the frozen generator in bf16 on AMX-BF16)."""
    import torch

    from hairlib.ops.cpu import cpu_name, has_amx_bf16

    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "amx_bf16": has_amx_bf16(), "torch": torch.__version__}


def training_seconds(run: Path) -> Optional[float]:
    """The training seconds a run's log reports last (its ``time`` or ``seconds``), if any."""
    log = Path(run) / "log.jsonl"
    last = None
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            value = entry.get("seconds", entry.get("time"))
            last = float(value) if isinstance(value, (int, float)) else last
    return last


def record_lineage(path: Path, record: Dict[str, Any]) -> Path:
    """Write ``record`` (and the file's sha256) into the ``.json`` beside ``path``."""
    sidecar = Path(path).with_suffix(".json")
    meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    meta.update(sha256=sha256_file(path), lineage=record)
    if "command" in meta:
        meta["command"] = record["command"]
    write_text(sidecar, json.dumps(meta, indent=2))
    return sidecar


def run_build(name: str, *, steps: int = None, staging: Path = STAGING, evaluate: bool = True,
              package: Path = WEIGHTS_DIR, hours: float = None, **overrides) -> List[Path]:
    """Train build ``name`` (resumable, in ``staging/NAME/run``) and stage its files in
    ``staging/weights``; returns them. ``steps`` and ``overrides`` (config fields) change its
    config, and the lineage records them."""
    build = builds()[name]
    cfg = replace(build.config, **overrides, **({} if steps is None else {"steps": steps}))
    parents = parents_dir(staging, name, package)
    run = Path(staging) / name / "run"
    model, metrics = build.make(cfg, parents, run, evaluate, **({} if hours is None else {"hours": hours}))
    dest = Path(staging) / "weights"
    dest.mkdir(parents=True, exist_ok=True)
    written = build.export(model, metrics, cfg, dest)
    record = lineage(build, cfg, parents)
    record["seconds"] = training_seconds(run)
    for path in written:
        record_lineage(path, record)
    return written


def ship(name: str, *, staging: Path = STAGING, package: Path = WEIGHTS_DIR, logs: Path = LOGS) -> List[Path]:
    """Copy build ``name``'s staged files (checked against their recorded sha256) into ``package``,
    and its run's log into ``logs/mini_NAME/``."""
    build, staged, out = builds()[name], Path(staging) / "weights", []
    for rel in build.files:
        src = staged / rel
        if not src.exists():
            raise FileNotFoundError(f"{src} is not staged: run `python -m hairlib.mini.build {name}` first")
        meta = json.loads(src.with_suffix(".json").read_text())
        if meta.get("sha256") != sha256_file(src) or meta.get("lineage", {}).get("build") != name:
            raise ValueError(f"{src} does not match its .json (sha256 or lineage): rebuild it")
        dest = Path(package) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        for s in (src, src.with_suffix(".json")):
            shutil.copyfile(s, dest.with_suffix(s.suffix))
        out.append(dest)
    log = Path(staging) / name / "run" / "log.jsonl"
    if log.exists() and logs is not None:
        (Path(logs) / f"mini_{name}").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, Path(logs) / f"mini_{name}" / "log.jsonl")
    return out


def describe(package: Path = WEIGHTS_DIR) -> str:
    lines = []
    for b in builds().values():
        meta = {}
        side = Path(package) / Path(b.files[0]).with_suffix(".json")
        if side.exists():
            meta = json.loads(side.read_text()).get("lineage", {})
        state = "shipped by this build" if meta.get("exact") else f"shipped file made by: {meta.get('made_by', '?')}"
        lines.append(f"{b.name:18s} parents: {', '.join(b.parents) or '(renders only)'}\n{'':18s} {state}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", metavar="NAME", help="builds to run or ship (--list shows them)")
    p.add_argument("--list", action="store_true", help="every build, its parents, and whether the shipped file is its")
    p.add_argument("--steps", type=int, default=None, help="total steps instead of the build's (a resumed run counts on)")
    p.add_argument("--staging", default=str(STAGING), help="run folders and the staging world (default runs/build)")
    p.add_argument("--ship", action="store_true", help="copy the staged files into hairlib/mini/weights")
    p.add_argument("--no-eval", action="store_true", help="train and stage only, no scores in the .json")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--hours", type=float, default=None, help="stylegan2: stop training at a checkpoint after this "
                   "wall time, then stage what it has (rerun to continue)")
    args = p.parse_args(argv)
    if args.list or not args.names:
        print(describe())
        return 0
    unknown = [n for n in args.names if n not in builds()]
    if unknown:
        print(f"error: unknown build {', '.join(unknown)}; builds: {', '.join(builds())}", flush=True)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for name in args.names:
        if args.ship:
            for path in ship(name, staging=Path(args.staging)):
                print(f"shipped {path}")
        else:
            from hairlib.train.checkpoint import stop_on_signals

            stop_on_signals()
            for path in run_build(name, steps=args.steps, staging=Path(args.staging), evaluate=not args.no_eval,
                                  hours=args.hours):
                print(f"staged {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
