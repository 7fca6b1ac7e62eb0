"""Recipe: the mini world's shipped edit networks — StyleCLIP mappers for a few prompts and
HairCLIP's conditional hair mapper.

    python -m hairlib.mini.train_mappers styleclip [--only afro] [--threads 1] [--augment 8] [--id-lambda 1]
    python -m hairlib.mini.train_mappers hairclip [--steps N] [--threads 1]
    python -m hairlib.mini.train_mappers hairclip-retower [--steps N]   # fine-tune it under a new CLIP image tower
    python -m hairlib.mini.train_mappers hairclip-keep [--oversample white=4 gray=2]   # oversample the colours it reaches least
    python -m hairlib.mini.train_mappers styleclip-retower [--only curly] [--steps N] [--id-lambda 0.3]   # the same for the mappers
    python -m hairlib.mini.train_mappers figure      # results/mini_hairclip.png from the shipped weights

StyleCLIP mappers (``MAPPERS``): one per prompt, the paper's losses (CLIP 1.0, L2 0.8, ID 0.1),
Ranger at 0.5, on latents sampled at truncation 0.7; hair-style and expression prompts train
the coarse and medium sub-mappers only, as the paper does, colour prompts all three. Shipped as
``weights/mappers/<name>.safetensors`` (the prompt in the metadata), found by
``world.mappers``.

HairCLIP (``HAIRCLIP``): the paper's losses and sampling (``hairlib.methods.hairclip``), 4 faces a
step; references are fresh renders. Shipped as ``weights/hairclip.safetensors`` (fp16).

``hairclip-retower`` (``RETOWER``) fine-tunes the shipped HairCLIP mapper under the CLIP now
shipped beside it, when only its image tower changed (the text tower, hence the text conditions,
are the same): the CLIP losses and the reference images' embeddings are the new tower's. It is
scored on the 6 hair tasks and on colour / hairstyle from held-out reference images, and replaces
the shipped file only if the mean of those 8 rises. ``styleclip-retower`` (``RETOWER_MAPPER``) does
the same for each shipped StyleCLIP mapper, with its own recipe (augmented views, identity weight),
shipped on the gate of ``styleclip``'s retrained mappers (success up by ``MIN_GAIN``, identity >= 0.8).

``hairclip-keep`` (``HAIRCLIP_KEEP``, not the paper's) fine-tunes the shipped HairCLIP mapper with a
hair-shape loss on colour-only edits (the mini parser's P(hair) of the edit against the source's
hair mask: on the 64 px generator the colour rows also draw the hair's outline, and colour edits
changed the classifier's hairstyle on 69-77 % of faces) and draws the colours it reaches least
often more often. It is scored on the hair tasks, text edits to those colours and the reference
matches, and ships when the mean of success and others kept rises, success falling by at most
``KEEP_SUCCESS_SLACK``.

All are resumable (``runs/mini_mappers/<name>/state.pt``; the logs stay beside it) and seeded.
The HairCLIP fine-tunes write ``report.txt`` beside their log: each task's success before and
after, the means and the verdict.
After training, each is scored by ``hairlib.evaluate`` on 64 validation faces no run saw
(``VAL_SEED``), and the scores go into the file's metadata; a retrained network replaces the shipped
one only on these faces' verdict, the shipped one scored on them afresh. ``hairlib eval`` reports on
other faces (seed 1234), which no shipping decision reads.
"""
from __future__ import annotations

import argparse
import copy
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Tuple

import torch

import hairlib
from hairlib import viz
from hairlib.atomic import write_text
from hairlib.evaluate import EDIT_TASKS, HAIR_TASKS, color_task, evaluate, evaluate_references
from hairlib.methods.hairclip import HairCLIPConfig, load_hair_mapper, save_hair_mapper, train_hairclip
from hairlib.methods.mapper import MapperConfig, load_mapper, save_mapper, train_mapper
from hairlib.mini import render as R
from hairlib.mini.shipping import WEIGHTS_DIR, record_sha256
from hairlib.mini.vocab import HAIR_COLORS, PHRASES
from hairlib.nets.loading import read_with_meta
from hairlib.train.checkpoint import stop_on_signals

RUNS = Path("runs") / "mini_mappers"

# name -> (prompt, sub-mappers); the prompts are hairlib.evaluate's tasks
MAPPERS = {
    "afro": ("a photo of a person with an afro.", ("coarse", "medium")),
    "curly": ("a photo of a person with curly hair.", ("coarse", "medium")),
    "red": ("a photo of a person with red hair.", ("coarse", "medium", "fine")),
    "smiling": ("a photo of a person with a smile.", ("coarse", "medium")),
    "bob": ("a photo of a person with a bob cut.", ("coarse", "medium")),
    "blond": ("a photo of a person with blond hair.", ("coarse", "medium", "fine")),
}
MAPPER_SETTINGS = {"steps": 2000, "batch": 8, "seed": 0}
# ``styleclip-retower --contrast-lambda X``: the prompts each mapper's edit is read away from, in its
# own prompt's frame, from the mini captions' vocabulary (not the paper's; ``MapperConfig.contrast``)


def _contrast(name: str) -> Tuple[str, ...]:
    frame = "a photo of a person with {}."
    styles = lambda own: tuple(frame.format(v["np"][0]) for k, v in PHRASES["hairstyle"].items()  # noqa: E731
                               if k not in (own, "bald"))
    if name in ("afro", "curly", "bob"):
        return styles({"bob": "bob cut"}.get(name, name))
    if name in ("red", "blond"):
        return tuple(frame.format(f"{c} hair") for c in HAIR_COLORS if c != name)
    if name == "smiling":
        return tuple(frame.format(v) for v in PHRASES["smiling"]["no"]["np"])
    raise KeyError(f"no contrast prompts for the {name!r} mapper")
HAIRCLIP = {"steps": 12000, "batch": 4, "seed": 0}
# a retrained StyleCLIP mapper replaces the shipped one only if its success beats it by this much (3 of
# the 64 faces): a mapper that learnt nothing (identity 0.995, success 0 -> 1.6 %) must not ship as a gain
MIN_GAIN = 0.05
# the faces shipping decisions are scored on (``hairlib eval``'s table: seed 1234, never read here)
VAL_SEED = 777


def _scores(world, method: str, names, extra_tasks=(), **kw) -> dict:
    """{task: scores} of ``method`` on the 64 validation faces (``VAL_SEED``); ``extra_tasks``:
    ``EditTask``s beside ``EDIT_TASKS``'s ``names``."""
    tasks = [t for t in EDIT_TASKS if t.name in names] + list(extra_tasks)
    return {r["task"]: {k: round(v, 4) for k, v in r.items() if isinstance(v, float)}
            for r in evaluate(world, method, tasks, n=64, seed=VAL_SEED, **kw)}


def _shipped_scores(world, path: Path, name: str) -> dict:
    """The shipped mapper at ``path`` scored afresh on the validation faces (its metadata may
    hold scores from other faces or another CLIP)."""
    return _scores(world, "mapper", [name], mapper=load_mapper(path, num_ws=world.generator.num_ws))[name]


def _gate(after: dict, before: dict) -> Optional[str]:
    """Why a retrained StyleCLIP mapper (``after``) must not replace the shipped one (``before``,
    scored afresh on the same faces), or None when it ships: success up by ``MIN_GAIN``, identity
    at the issue's 0.8 or above, or, where the shipped mapper's is below 0.8 already, not below it."""
    if after["success"] < before.get("success", -1.0) + MIN_GAIN:
        return f"success {after['success']:.3f} < shipped {before['success']:.3f} + {MIN_GAIN}"
    floor = min(0.8, before.get("identity", 0.8))
    if after["identity"] < floor:
        return f"identity {after['identity']:.3f} < {floor:.3f} (success {before.get('success')} -> {after['success']})"
    return None


def train_styleclip(world, only=None, augment: int = 0, weights: Path = WEIGHTS_DIR,
                    id_lambda: Optional[float] = None) -> None:
    """Train (or resume) each mapper and ship it. ``augment`` > 0: the CLIP loss over that many
    augmented views, in its own run folder (``<name>_augment<K>``); ``id_lambda``: the identity
    loss's weight instead of the paper's 0.1 (run folder ``..._id<X>``). Either way the mapper is
    shipped only where its success beats the shipped mapper's by ``MIN_GAIN`` and its identity
    stays at the issue's 0.8 or above."""
    for name, (text, groups) in MAPPERS.items():
        if only and name not in only:
            continue
        extra = {} if id_lambda is None else {"id_lambda": id_lambda}
        cfg = MapperConfig(groups=groups, **MAPPER_SETTINGS, augment=augment, **extra)
        run = name + (f"_augment{augment}" if augment else "") + (f"_id{id_lambda:g}" if extra else "")
        m = train_mapper(world, text, cfg, RUNS / run)
        dest = Path(weights) / "mappers" / f"{name}.safetensors"
        scores = _scores(world, "mapper", [name], mapper=m)
        command = (f"python -m hairlib.mini.train_mappers styleclip --only {name}" + (f" --augment {augment}" if augment else "")
                   + (f" --id-lambda {id_lambda:g}" if extra else ""))
        meta = {"recipe": cfg.to_dict(), "scores": scores, "command": command, "scores_seed": VAL_SEED}
        if (augment or extra) and dest.exists():
            before = _shipped_scores(world, dest, name)
            why = _gate(scores[name], before)
            if why:
                print(f"{name}: not shipped, {why}")
                continue
            print(f"{name}: success {before.get('success')} -> {scores[name]['success']}")
            meta["scores_before"] = {name: before}
        record_sha256(save_mapper(m, dest, text=text, extra=meta))
        print(f"wrote {dest}: {scores}")


def train_hair(world, steps=None, weights: Path = WEIGHTS_DIR) -> None:
    cfg = HairCLIPConfig(**{**HAIRCLIP, **({"steps": steps} if steps else {})})
    m = train_hairclip(world, cfg, RUNS / "hairclip")
    scores = _scores(world, "hairclip", [t.name for t in HAIR_TASKS], mapper=m)
    dest = save_hair_mapper(copy.deepcopy(m).half(), Path(weights) / "hairclip.safetensors",  # fp16: half the size
                            extra={"recipe": asdict(cfg), "scores": scores, "scores_seed": VAL_SEED, "dtype": "float16",
                                   "command": "python -m hairlib.mini.train_mappers hairclip"})
    record_sha256(dest)
    print(f"wrote {dest}: {scores}")


def figure(world, path=Path("results") / "mini_hairclip.png", n: int = 8) -> Path:
    """Faces no run saw, edited by the shipped HairCLIP mapper (text, both, references) and by
    StyleCLIP's global directions and mappers toward the same hair."""
    w = world.sample(n, seed=4321)
    rows, labels = [world.generate(w)], ["source"]

    def add(label, **kw):
        rows.append(hairlib.edit(world, w, **kw).images)
        labels.append(label)

    for style in ("afro", "bob cut", "mohawk"):
        add(f"HairCLIP: {style}", method="hairclip", hairstyle=f"{style} hairstyle")
    for color in ("blond", "purple"):
        add(f"HairCLIP: {color}", method="hairclip", color=f"{color} hair")
    add("HairCLIP: pink afro", method="hairclip", hairstyle="afro hairstyle", color="pink hair")
    ref = R.render_batch([R.sample_params(7, split="heldout", hairstyle="bob cut", hair_color="green", hat=0)])[0]
    rows.append(ref.repeat(n, 0))
    labels.append("reference")
    add("HairCLIP: like ref", method="hairclip", hairstyle=world.align(ref), color=world.align(ref))
    add("global: afro", method="global", text="a photo of a person with an afro.", alpha=2.0)
    if "afro" in world.mappers:
        add("mapper: afro", method="mapper", text="x", mapper=world.mappers["afro"])
    path.parent.mkdir(parents=True, exist_ok=True)
    viz.grid(rows, labels, scale=2).save(path)
    return path


def _fine_tune_hair(world, dest: Path, meta: dict, base, cfg, run: str, score, extra: dict, gate=None) -> bool:
    """Fine-tune the HairCLIP mapper ``base`` (read from ``dest``, metadata ``meta``) by ``cfg`` in
    ``RUNS / run``; ``score(world, mapper) -> {task: scores}`` rates it and ``base`` on the validation
    faces. It replaces ``dest`` (fp16; ``extra`` added to the metadata: its stage and command) only if
    ``gate(before, after)`` (default: the mean success rises). Either way ``report.txt`` in the run
    folder gives each task's before and after and the verdict."""
    before = score(world, base)
    m = train_hairclip(world, cfg, RUNS / run, init=base)
    after = score(world, m)
    ship = gate(before, after) if gate is not None else _mean_success(after) > _mean_success(before)
    lines = [f"{task}: success {before[task]['success']:.3f} -> {after[task]['success']:.3f}"
             + "".join(f", {k} {before[task][k]:.3f} -> {after[task][k]:.3f}" for k in ("preserved", "identity")
                       if k in after[task] and k in before[task]) for task in after]
    summary = [f"mean success over {list(after)}: shipped {_mean_success(before):.3f}, fine-tuned {_mean_success(after):.3f}"]
    if any("preserved" in v for v in after.values()):
        summary.append(f"mean others kept: shipped {_mean_kept(before):.3f}, fine-tuned {_mean_kept(after):.3f}")
    lines += summary + ["shipped" if ship else "not shipped: no better than the shipped mapper"]
    write_text(RUNS / run / "report.txt", "\n".join(lines) + "\n")
    print("\n".join(lines[-1 - len(summary):]))
    if not ship:
        return False
    save_hair_mapper(copy.deepcopy(m).half(), dest, extra={
        "recipe": asdict(cfg), "init_recipe": meta.get("recipe"), "init_stage": meta.get("stage"), "scores": after,
        "scores_seed": VAL_SEED, "scores_before": before, "dtype": "float16", **extra})
    record_sha256(dest)
    print(f"wrote {dest}: {after}")
    return True


RETOWER = {"steps": 4000, "seed": 12}


def _hair_and_reference_scores(world, mapper, colors=()) -> dict:
    """The 6 hair tasks' scores (and text edits to ``colors`` beside them) and the
    reference-image matches, on the validation faces."""
    known = {t.name for t in HAIR_TASKS}
    scores = _scores(world, "hairclip", [t.name for t in HAIR_TASKS], mapper=mapper,
                     extra_tasks=[color_task(c) for c in colors if c not in known])
    for row in evaluate_references(world, n=64, seed=VAL_SEED, mapper=mapper, references=("image",)):
        scores[row["task"]] = {k: v for k, v in row.items() if isinstance(v, (int, float))}
    return scores


def _mean_success(scores: dict) -> float:
    return sum(v["success"] for v in scores.values()) / len(scores)


def _mean_kept(scores: dict) -> float:
    """Mean share of the other attributes kept, over the tasks that report it (not the reference rows)."""
    kept = [v["preserved"] for v in scores.values() if "preserved" in v]
    return sum(kept) / len(kept) if kept else float("nan")


def _keep_gain(before: dict, after: dict) -> bool:
    """``hairclip-keep``'s gate: the mean of success and others kept rises, success falling by at
    most ``KEEP_SUCCESS_SLACK``."""
    mean = lambda s: (_mean_success(s) + _mean_kept(s)) / 2  # noqa: E731
    return mean(after) > mean(before) and _mean_success(after) >= _mean_success(before) - KEEP_SUCCESS_SLACK


def _retowered(meta: dict, clip_stage: str) -> bool:
    """Whether an edit network's metadata says it was fine-tuned under this CLIP stage already
    (``hairclip-keep`` fine-tunes a retowered mapper further and keeps its ``clip``)."""
    return meta.get("stage") in ("retower", "keep") and meta.get("clip") == clip_stage


# HairCLIPConfig fields removed since (never shipped), at the value every shipped recipe records
REMOVED_HAIRCLIP = {"maintain_shape_lambda": 0.0, "style_weights": None}


def _hairclip_recipe(meta: dict) -> dict:
    """The HairCLIPConfig fields of a mapper's recorded recipe (``HAIRCLIP`` if it has none): keys
    of fields removed since are dropped at their old default, refused at any other value."""
    recipe = meta.get("recipe") or HAIRCLIP
    changed = sorted(k for k, v in REMOVED_HAIRCLIP.items() if k in recipe and recipe[k] != v)
    if changed:
        raise ValueError(f"the mapper's recipe sets {changed}, options hairlib no longer has: "
                         f"{ {k: recipe[k] for k in changed} }")
    return {k: v for k, v in recipe.items() if k in HairCLIPConfig.__dataclass_fields__}


def train_hair_retower(world, steps=None, dest=None) -> bool:
    """Fine-tune the shipped HairCLIP mapper under the shipped CLIP (a new image tower, the same
    text tower); ship it if its mean success over the hair tasks and reference matches rises.
    A mapper already fine-tuned under this CLIP is left alone."""
    dest = Path(dest) if dest is not None else WEIGHTS_DIR / "hairclip.safetensors"
    _, meta = read_with_meta(dest)
    clip_stage = read_with_meta(dest.parent / "clip.safetensors")[1].get("stage", "")
    if _retowered(meta, clip_stage):
        print(f"{dest}: already fine-tuned under the {clip_stage!r} CLIP, left alone")
        return False
    base = load_hair_mapper(dest, num_ws=world.generator.num_ws)
    # train at the strength it is used at (the shipped file's, chosen after its training)
    cfg = HairCLIPConfig(**{**_hairclip_recipe(meta), **RETOWER, **({"steps": steps} if steps else {}),
                            "strength": base.strength})
    return _fine_tune_hair(world, dest, meta, base, cfg, "hairclip_retower", _hair_and_reference_scores, {
        "stage": "retower", "rounds": 1, "clip": clip_stage,
        "command": f"{meta.get('command', 'python -m hairlib.mini.train_mappers hairclip')} && "
                   "python -m hairlib.mini.train_mappers hairclip-retower"})


# hairclip-keep: the colours the mapper reached least often before this stage (grid: white 4 %, gray
# 57 %, pink 72 %, brown 76 %) are drawn more often (0.580 -> 0.638, kept 0.832 -> 0.825; a repeat: 0.627)
HAIRCLIP_KEEP = {"steps": 3000, "seed": 21, "color_weights": {"white": 4.0, "gray": 2.0, "pink": 2.0, "brown": 2.0}}
KEEP_SUCCESS_SLACK = 0.01


def train_hair_keep(world, steps=None, dest=None, color_weights: Optional[dict] = None,
                    id_lambda: Optional[float] = None, whole_reference: bool = False,
                    reading_lambda: Optional[float] = None, text_reading_lambda: Optional[float] = None) -> bool:
    """Fine-tune the shipped HairCLIP mapper with ``HAIRCLIP_KEEP`` (``color_weights`` /
    ``id_lambda``: those instead; ``whole_reference``: reference
    images read whole, ``HairCLIPConfig.mask_reference=False``; ``reading_lambda`` /
    ``text_reading_lambda``: ``image_reading_lambda`` / ``text_reading_lambda``; run folder
    ``hairclip_keep[_<colours>][_id<X>][_whole][_read<X>][_textread<X>]``, the
    last three as the recipe has them, inherited from the mapper it starts from unless given);
    scored on the 6 hair tasks, text
    edits to the oversampled colours and the reference matches, shipped on
    ``_keep_gain``."""
    dest = Path(dest) if dest is not None else WEIGHTS_DIR / "hairclip.safetensors"
    _, meta = read_with_meta(dest)
    base = load_hair_mapper(dest, num_ws=world.generator.num_ws)
    recipe = _hairclip_recipe(meta)
    keep = {**HAIRCLIP_KEEP, **({} if color_weights is None else {"color_weights": color_weights}),
            **({} if id_lambda is None else {"id_lambda": id_lambda}), **({"steps": steps} if steps else {}),
            **({"mask_reference": False} if whole_reference else {}),
            **({} if reading_lambda is None else {"image_reading_lambda": reading_lambda}),
            **({} if text_reading_lambda is None else {"text_reading_lambda": text_reading_lambda})}
    cfg = HairCLIPConfig(**{**recipe, **keep, "strength": base.strength})
    colors = sorted(cfg.color_weights or {})
    pairs = lambda odds: " ".join(f"{k.replace(' ', '_')}={v:g}" for k, v in odds.items())  # noqa: E731
    flags = "".join([f" --steps {steps}" if steps else "",
                     "" if color_weights is None else " --oversample " + pairs(color_weights),
                     "" if id_lambda is None else f" --id-lambda {id_lambda:g}", " --whole-reference" if whole_reference else "",
                     "" if reading_lambda is None else f" --reading-lambda {reading_lambda:g}",
                     "" if text_reading_lambda is None else f" --text-reading-lambda {text_reading_lambda:g}"])
    run = ("hairclip_keep" + ("" if color_weights is None else "_" + "_".join(colors))
           + ("" if id_lambda is None else f"_id{id_lambda:g}")
           # these from the recipe, which inherits them from the mapper it starts from
           + ("" if cfg.mask_reference else "_whole")
           + (f"_read{cfg.image_reading_lambda:g}" if cfg.image_reading_lambda else "")
           + (f"_textread{cfg.text_reading_lambda:g}" if cfg.text_reading_lambda else ""))
    return _fine_tune_hair(world, dest, meta, base, cfg, run, lambda w, m: _hair_and_reference_scores(w, m, colors), {
        "stage": "keep", "rounds": int(meta.get("rounds", 1)), "clip": meta.get("clip", ""),
        "command": f"{meta.get('command', 'python -m hairlib.mini.train_mappers hairclip')} && "
                   "python -m hairlib.mini.train_mappers hairclip-keep" + flags}, gate=_keep_gain)


RETOWER_MAPPER = {"steps": 800, "seed": 12}


def train_styleclip_retower(world, only=None, steps=None, weights: Path = WEIGHTS_DIR,
                            id_lambda: Optional[float] = None, contrast_lambda: Optional[float] = None) -> dict:
    """Fine-tune each shipped StyleCLIP mapper (``only``: these) under the shipped CLIP, from its
    weights with its own recipe (``id_lambda``: that identity weight instead, run folder
    ``<name>_retower_id<X>``; ``contrast_lambda``: CLIP's reading of the edit against
    ``_contrast(name)``'s prompts at that weight, folder suffix ``_contrast<X>``); ship it where its success on the validation faces beats the
    shipped one's (scored afresh) by ``MIN_GAIN`` at identity >= 0.8. Mappers already fine-tuned
    under this CLIP are left alone. Returns {name: {"before", "after", "shipped"}}."""
    weights = Path(weights)
    clip_stage = read_with_meta(weights / "clip.safetensors")[1].get("stage", "")
    report = {}
    for path in sorted((weights / "mappers").glob("*.safetensors")):
        name = path.stem
        if (only and name not in only) or name not in MAPPERS:
            continue
        _, meta = read_with_meta(path)
        if _retowered(meta, clip_stage):
            print(f"{path}: already fine-tuned under the {clip_stage!r} CLIP, left alone")
            continue
        recipe = {k: v for k, v in (meta.get("recipe") or {}).items() if k in MapperConfig.__dataclass_fields__}
        recipe = {**MAPPER_SETTINGS, "groups": MAPPERS[name][1], **recipe}
        recipe["groups"] = tuple(recipe["groups"])
        recipe["contrast"] = tuple(recipe.get("contrast", ()))
        extra = {**({} if id_lambda is None else {"id_lambda": id_lambda}),
                 **({} if contrast_lambda is None else {"contrast_lambda": contrast_lambda, "contrast": _contrast(name)})}
        cfg = MapperConfig(**{**recipe, **RETOWER_MAPPER, **({"steps": steps} if steps else {}), **extra})
        before = _shipped_scores(world, path, name)
        flags = ("" if id_lambda is None else f" --id-lambda {id_lambda:g}") + (
            "" if contrast_lambda is None else f" --contrast-lambda {contrast_lambda:g}")
        run = (f"{name}_retower" + ("" if id_lambda is None else f"_id{id_lambda:g}")
               + ("" if contrast_lambda is None else f"_contrast{contrast_lambda:g}"))
        m = train_mapper(world, meta["text"], cfg, RUNS / run, init=path)
        after = _scores(world, "mapper", [name], mapper=m)[name]
        why = _gate(after, before)
        report[name] = {"before": before, "after": after, "shipped": why is None}
        line = (f"{name}: success {before['success']:.3f} -> {after['success']:.3f}, identity {before['identity']:.3f} -> "
                f"{after['identity']:.3f}: {'shipped' if why is None else 'not shipped, ' + why}")
        print(line)
        write_text(RUNS / run / "report.txt", line + "\n")
        if why is None:
            save_mapper(m, path, text=meta["text"], extra={
                "recipe": cfg.to_dict(), "init_recipe": meta.get("recipe"), "init_stage": meta.get("stage"),
                "stage": "retower", "rounds": 1, "clip": clip_stage, "scores": {name: after}, "scores_seed": VAL_SEED,
                "scores_before": {name: before},
                "command": (f"{meta.get('command', '')} && python -m hairlib.mini.train_mappers styleclip-retower "
                            f"--only {name}" + flags).lstrip(" &")})
            record_sha256(path)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["styleclip", "hairclip", "hairclip-retower", "hairclip-keep", "styleclip-retower",
                                    "figure"])
    p.add_argument("--only", nargs="*", default=None, help="styleclip: these mappers only")
    p.add_argument("--steps", type=int, default=None, help="hairclip: total steps")
    p.add_argument("--augment", type=int, default=0, help="styleclip: CLIP loss over this many augmented views")
    p.add_argument("--id-lambda", type=float, default=None,
                   help="styleclip, styleclip-retower, hairclip-keep: the identity loss's weight (default: the paper's 0.1 / "
                        "the mapper's own / the HairCLIP recipe's)")
    p.add_argument("--oversample", nargs="*", default=None, metavar="COLOR=WEIGHT",
                   help="hairclip-keep: relative odds of target colours, e.g. white=4 gray=2 (default: HAIRCLIP_KEEP's)")
    p.add_argument("--whole-reference", action="store_true",
                   help="hairclip-keep: train on whole reference images' CLIP embeddings, not their hair regions' "
                        "(the mini CLIP never saw hair-only images); the mapper then reads references that way")
    p.add_argument("--reading-lambda", type=float, default=None,
                   help="hairclip-keep: the weight of CLIP's zero-shot reading of the edit against the reference's "
                        "(HairCLIPConfig.image_reading_lambda; default: the recipe's)")
    p.add_argument("--text-reading-lambda", type=float, default=None,
                   help="hairclip-keep: the same reading for text conditions, against their own prompt among the "
                        "vocabulary's (HairCLIPConfig.text_reading_lambda)")
    p.add_argument("--contrast-lambda", type=float, default=None,
                   help="styleclip-retower: the weight of CLIP's reading of the edit against other prompts of its attribute "
                        "(the other hairstyles, colours; a neutral expression for smiling)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--weights", default=None,
                   help="the mini world's weights folder to read and write (default: $HAIRLIB_MINI_WEIGHTS, else the "
                        "shipped one)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    stop_on_signals()
    import os

    weights = Path(args.weights or os.environ.get("HAIRLIB_MINI_WEIGHTS") or WEIGHTS_DIR)
    world = hairlib.load_world("mini", weights_dir=weights)
    if args.what == "styleclip":
        train_styleclip(world, args.only, args.augment, weights, args.id_lambda)
    elif args.what == "figure":
        print(f"wrote {figure(world)}")
    elif args.what == "hairclip-retower":
        train_hair_retower(world, args.steps, weights / "hairclip.safetensors")
    elif args.what == "hairclip-keep":
        def odds(flag, given, what):
            if given is None:
                return None
            try:
                return {k.replace("_", " "): float(v) for k, v in (a.split("=", 1) for a in given)}
            except ValueError:
                p.error(f"{flag} takes {what}=WEIGHT pairs, got {given}")

        train_hair_keep(world, args.steps, weights / "hairclip.safetensors", odds("--oversample", args.oversample, "COLOR"),
                        args.id_lambda, args.whole_reference, args.reading_lambda, args.text_reading_lambda)
    elif args.what == "styleclip-retower":
        import json

        print(json.dumps(train_styleclip_retower(world, args.only, args.steps, weights, args.id_lambda,
                                                 args.contrast_lambda), indent=1))
    else:
        train_hair(world, args.steps, weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
