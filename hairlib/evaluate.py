"""How well an edit worked, measured as the papers do, on the mini world's own judges.

    rows = evaluate(world, "global", tasks=EDIT_TASKS, n=64)
    print(format_table(rows))

A **task** changes one attribute: a prompt for the StyleCLIP methods ("a photo of a person with
blond hair"), the HairCLIP condition for the same change (``color="blond hair"``) and the label
the attribute classifier should then give (hair_color = blond). Each method edits the same
``n`` sampled faces; for each task we report

* **success**: the share of edited faces the classifier gives the target value, among the faces
  that did not have it before the edit;
* **preserved**: the share of (face, other attribute) pairs whose predicted value did not change
  (the issue's "other attributes unchanged"); attributes that the target changes by definition
  are left out (hats are drawn on some hairstyles only), and a bald head (before or after) has
  no hair colour to keep; **kept_by** gives that share per attribute (``format_changes`` lists
  the attributes an edit changes most);
* **identity**: the identity net's cosine similarity between source and edit;
* **clip**: the CLIP score (cosine) of the edit with the prompt;
* **psnr_bg / ssim_bg**: PSNR and SSIM outside the hair of both images (HairCLIP's metric, masks
  from the world's parser);
* **seconds**: wall time per face of the edit itself (pre-processing and training excluded).

A long evaluation (optimisation over 64 faces is about two hours on a laptop CPU) can be
resumed: with ``resume=PATH`` each finished task's row is written atomically to that JSON file,
under a key of everything the rows depend on (the world's networks and mappers, the method and
its settings, the faces). Rerunning with the same file skips the tasks it holds; a file written
under another key is started afresh.

The mini world's classifier plays the CelebA classifier's role; on the ffhq world no attribute
classifier is published, so success and preservation are not measured there.

**Truth mode** (``evaluate_truth``, ``hairlib eval --truth``, mini world only) measures what no
paper could: held-out renders of known parameters are inverted and edited, and each edit has a
true answer, the render of the same parameters with the target hair. Per task it reports PSNR
and a feature distance (LPIPS's form on the classifier's trunk) to the truth, the hair-mask IoU
with the truth (the parser on both), the hair colour error (CIEDE2000 of the mean LAB hair
colour) and PSNR outside the union of both hair masks against the source. Its first row,
"inversion", scores the unedited inversion against the source: the floor every edit starts from.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

import hairlib
from hairlib.atomic import write_text
from hairlib.methods.global_dir import GlobalDirections, fingerprint
from hairlib.methods.hairclip import color_text, hairclip_vocab, style_text
from hairlib.methods.maniclip import outside_hair_and_face
from hairlib.methods.mapper import find_mapper
from hairlib.metrics import kid, psnr, ssim
from hairlib.mini import render as R
from hairlib.mini.captions import group_sampled_sentence
from hairlib.mini.vocab import HAIR_COLORS, HAIRSTYLES, LABEL_NAMES, value_index

__all__ = ["EditTask", "EDIT_TASKS", "HAIR_TASKS", "color_task", "evaluate", "score_edit", "run_key", "evaluate_references", "evaluate_hairclip_grid",
           "summarize_grid", "summarize", "format_table", "format_changes",
           "predict_labels", "eval_sentences", "evaluate_sentences", "latent_spread", "SENTENCE_METHODS",
           "SENTENCE_COLUMNS", "format_sentence_table", "truth_sources", "truth_of", "truth_scores", "evaluate_truth",
           "TRUTH_COLUMNS", "format_truth_table"]


@dataclass(frozen=True)
class EditTask:
    name: str  # short name, e.g. "blond"
    attribute: str  # the classifier's label
    value: str  # the target value
    text: str  # prompt for optimize / global / mapper
    hairclip: Dict[str, str] = field(default_factory=dict)  # hairstyle= / color= for HairCLIP, if a hair edit
    free: Sequence[str] = ()  # other labels this edit may change by definition


def _hair_task(name, attribute, value, text):
    key = "color" if attribute == "hair_color" else "hairstyle"
    cond = f"{value} hair" if key == "color" else f"{value} hairstyle"
    free = () if key == "color" else ("hat",)  # hats are only drawn on some hairstyles
    return EditTask(name, attribute, value, text, {key: cond}, free)


def color_task(color: str) -> EditTask:
    """A hair-colour edit task for any colour of the vocabulary (text "a photo of a person with <c> hair.")."""
    return _hair_task(color, "hair_color", color, f"a photo of a person with {color} hair.")


def style_task(style: str) -> EditTask:
    """A hairstyle edit task for any hairstyle of the vocabulary (text "a photo of a person with a <s> hairstyle.")."""
    return _hair_task(style, "hairstyle", style, f"a photo of a person with a {style} hairstyle.")


HAIR_TASKS: List[EditTask] = [
    _hair_task("blond", "hair_color", "blond", "a photo of a person with blond hair."),
    _hair_task("red", "hair_color", "red", "a photo of a person with red hair."),
    _hair_task("purple", "hair_color", "purple", "a photo of a person with purple hair."),
    _hair_task("afro", "hairstyle", "afro", "a photo of a person with an afro."),
    _hair_task("curly", "hairstyle", "curly", "a photo of a person with curly hair."),
    _hair_task("bob cut", "hairstyle", "bob cut", "a photo of a person with a bob cut."),
]
EDIT_TASKS: List[EditTask] = HAIR_TASKS + [
    EditTask("smiling", "smiling", "yes", "a photo of a person with a smile."),
    EditTask("glasses", "eyeglasses", "yes", "a photo of a person with glasses."),
]


@torch.no_grad()
def predict_labels(world, images: torch.Tensor, batch: int = 256) -> Dict[str, torch.Tensor]:
    """The world's attribute classifier: images -> {label: predicted value index [N]}."""
    if world.classifier is None:
        raise ValueError(f"the {world.name} world has no attribute classifier: success cannot be measured")
    out: Dict[str, List[torch.Tensor]] = {}
    for i in range(0, len(images), batch):
        for k, v in world.classifier(images[i:i + batch].to(world.device)).items():
            out.setdefault(k, []).append(v.argmax(1).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def _run(world, method: str, w: torch.Tensor, task: EditTask, kw: dict):
    if method == "hairclip":
        if not task.hairclip:
            return None
        return hairlib.edit(world, w, method="hairclip", **task.hairclip, **kw)
    if method == "mapper":
        if "mapper" not in kw and find_mapper(world, task.text) is None:
            return None
    return hairlib.edit(world, w, task.text, method=method, **kw)


def _edit_batches(world, method: str, w: torch.Tensor, task: EditTask, batch: int, kw: dict):
    """``task``'s edits of every face of ``w``, ``batch`` at a time -> (images [N, 3, R, R] clamped
    to [-1, 1], seconds of the edits themselves), or None when ``method`` cannot run ``task``."""
    images, seconds = [], 0.0
    for i in range(0, len(w), batch):
        t0 = time.time()
        r = _run(world, method, w[i:i + batch], task, kw)
        if r is None:
            return None
        seconds += time.time() - t0
        images.append(r.images.detach().clamp(-1, 1))
    return torch.cat(images), seconds


def _sources(world, n: int, seed: int, batch: int):
    """The ``n`` faces every method edits: (W+ [n, ...], images [n, 3, R, R] clamped to [-1, 1])."""
    w = world.sample(n, seed=seed)
    with torch.no_grad():
        return w, torch.cat([world.generate(w[i:i + batch]).clamp(-1, 1) for i in range(0, n, batch)])


@torch.no_grad()
def _hair(world, images: torch.Tensor, batch: int) -> torch.Tensor:
    """The world's hair masks of ``images``, ``batch`` at a time -> [N, 1, H, W]."""
    return torch.cat([world.masks(images[i:i + batch])["hair"] for i in range(0, len(images), batch)])


def _digest(h, value: Any) -> None:
    """Feed into ``h`` what a setting of an edit amounts to: a network's weights, a file's bytes,
    global directions' relevance, else its repr (an object without a stable repr never matches)."""
    if isinstance(value, torch.nn.Module):
        value = value.state_dict()
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            h.update(str(k).encode())
            _digest(h, value[k])
    elif isinstance(value, (list, tuple)):
        for v in value:
            _digest(h, v)
    elif isinstance(value, torch.Tensor):
        h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, Path) and value.is_file():
        h.update(value.read_bytes())
    elif hasattr(value, "relevance") and isinstance(getattr(value, "relevance"), torch.Tensor):
        _digest(h, [value.relevance, getattr(value, "meta", {})])
    else:
        h.update(repr(value).encode())


def run_key(world, method: str, n: int, seed: int, batch: int, kw: dict) -> str:
    """What an evaluation's rows depend on, hashed: the world's networks (generator and CLIP by
    global directions' ``fingerprint``; identity net, classifier, parser masks' net, shipped
    mappers by content), the method, its settings and the faces (``n``, ``seed``; ``batch`` for
    the optimiser, which steps a batch together)."""
    h = hashlib.sha256()
    for part in (world.name, method, n, seed, batch, fingerprint(world)):
        h.update(repr(part).encode())
    nets = {"identity": world.identity, "classifier": world.classifier,
            "masks": getattr(world.masks, "__self__", None), "mappers": world.mappers,
            "hairclip_mapper": world.hairclip_mapper, "maniclip_editor": getattr(world, "maniclip_editor", None)}
    _digest(h, {k: v for k, v in nets.items() if v is not None})
    _digest(h, kw)
    return h.hexdigest()[:20]


def _read_partial(path: Path, key: str) -> Dict[str, dict]:
    """The rows a resumable evaluation saved under ``key`` (task repr -> row); none if the file
    is absent, unreadable or written under another key."""
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return dict(state.get("rows", {})) if state.get("key") == key else {}


def _write_partial(path: Path, key: str, rows: Dict[str, dict]) -> None:
    write_text(path, json.dumps({"key": key, "rows": rows}, indent=1))


def evaluate(world, method: str, tasks: Sequence[EditTask] = EDIT_TASKS, n: int = 64, seed: int = 1234,
             batch: int = 64, progress: bool = False, resume: Optional[os.PathLike] = None, **kw) -> List[dict]:
    """One row per task that ``method`` can run (mapper: the tasks with a shipped mapper;
    hairclip: the hair tasks). ``kw`` go to the method (e.g. steps=, alpha=). ``resume``: a JSON
    file that keeps each finished task's row, so that an interrupted run continues where it
    stopped (see the module's docstring)."""
    from tqdm.auto import tqdm

    if method == "global" and "directions" not in kw:  # the one-off pre-processing is not the edit's time
        kw = {**kw, "directions": GlobalDirections.for_world(world, progress=progress)}
    key = run_key(world, method, n, seed, batch, kw) if resume is not None else ""
    saved = _read_partial(Path(resume), key) if resume is not None else {}
    todo = [t for t in tasks if repr(t) not in saved]
    if saved and progress:
        print(f"resuming {method} from {resume}: {len(tasks) - len(todo)} of {len(tasks)} tasks done")
    w_all = src_all = before = src_hair = None
    if todo:
        w_all, src_all = _sources(world, n, seed, batch)
        before = predict_labels(world, src_all) if world.classifier is not None else None
        src_hair = _hair(world, src_all, batch) if world.masks is not None else None
    rows = []
    for task in tqdm(tasks, desc=f"evaluate {method}", disable=not progress):
        if repr(task) in saved:
            if saved[repr(task)] is not None:  # None: the method cannot run this task
                rows.append(saved[repr(task)])
            continue
        done = _edit_batches(world, method, w_all, task, batch, kw)
        if done is None:
            if resume is not None:
                saved[repr(task)] = None
                _write_partial(Path(resume), key, saved)
            continue
        edit, seconds = done
        row = {"method": method, "task": task.name, "n": n,
               **_edit_scores(world, task, src_all, edit, batch, seconds / n, before, src_hair)}
        rows.append(row)
        if resume is not None:
            saved[repr(task)] = row
            _write_partial(Path(resume), key, saved)
    return rows


def _edit_scores(world, task: EditTask, src: torch.Tensor, edit: torch.Tensor, batch: int, seconds: float,
                 before: Optional[Dict[str, torch.Tensor]] = None, src_hair: Optional[torch.Tensor] = None) -> dict:
    """The measures of ``task``'s edits ``edit`` of the faces ``src`` (both [N, 3, R, R] in [-1, 1]), in the
    order of ``evaluate``'s rows: success and others kept (``before``: the classifier's labels of
    ``src``; None: no classifier), identity, CLIP score, ``seconds`` a face, PSNR / SSIM outside the
    hair (``src_hair``: the hair masks of ``src``; None: no masks)."""
    n = len(src)
    row = {}
    if before is not None:
        row.update(_label_scores(world, task, before, predict_labels(world, edit)))
    with torch.no_grad():
        ident = torch.cat([world.identity_similarity(src[i:i + batch], edit[i:i + batch]) for i in range(0, n, batch)])
        txt = world.clip.encode_text(task.text)
        clip = torch.cat([(world.clip.encode_image(edit[i:i + batch]) @ txt.t())[:, 0] for i in range(0, n, batch)])
    row.update(identity=ident.mean().item(), clip=clip.mean().item(), seconds=seconds)
    if src_hair is not None:
        keep = (1 - src_hair) * (1 - _hair(world, edit, batch))
        row["psnr_bg"] = psnr(edit, src, keep).mean().item()
        row["ssim_bg"] = ssim(edit, src, keep).mean().item()
    return row


def score_edit(world, result, task: EditTask, batch: int = 64) -> dict:
    """``evaluate``'s measures of an edit already made: ``result`` (an ``EditResult``) edited its
    source faces toward ``task``. One row for ``format_table``: success and others kept where the
    world has an attribute classifier, identity, CLIP score, time per face, PSNR / SSIM outside the
    hair where it has masks."""
    src, edit = result.source_images.detach().clamp(-1, 1), result.images.detach().clamp(-1, 1)
    before = predict_labels(world, src) if world.classifier is not None else None
    src_hair = _hair(world, src, batch) if world.masks is not None else None
    return {"method": result.method, "task": task.name, "n": len(result),
            **_edit_scores(world, task, src, edit, batch, result.seconds / len(result), before, src_hair)}


def evaluate_references(world, n: int = 64, seed: int = 1234, mapper=None, ref_seed: int = 99,
                        references: Sequence[str] = ("image", "text")) -> List[dict]:
    """HairCLIP with reference images (mini world): each face gets its own held-out reference
    render (an attribute combination no training saw), once for the colour and once for the
    hairstyle; ``match`` is the share of edits whose predicted label is the reference's. One row
    per kind and per way of turning a reference into a condition (``hairclip_edit(reference=)``:
    the paper's "image" embedding, or CLIP's zero-shot reading as "text")."""
    import numpy as np

    rng = np.random.default_rng(ref_seed)
    w, src = _sources(world, n, seed, batch=n)
    before = predict_labels(world, src)
    rows = []
    for kind, label in (("color", "hair_color"), ("hairstyle", "hairstyle")):
        params = []
        while len(params) < n:
            p = R.sample_params(rng, split="heldout")
            if HAIRSTYLES[p.hairstyle] != "bald" and not p.hat:  # a colour and a silhouette to copy
                params.append(p)
        images, _, labels = R.render_batch(params)
        aligned = world.align(images)  # once for both ways of reading it
        target = torch.as_tensor(labels[label])
        differs = before[label] != target
        for reference in references:
            t0 = time.time()
            r = hairlib.edit(world, w, method="hairclip", mapper=mapper, reference=reference, **{kind: aligned})
            seconds = (time.time() - t0) / n
            after = predict_labels(world, r.images)
            ident = world.identity_similarity(src, r.images)
            rows.append({"method": "hairclip", "task": f"{kind} from reference ({reference})", "n": n,
                         "match": (after[label] == target).float().mean().item(),
                         "success": (after[label][differs] == target[differs]).float().mean().item(),
                         "identity": ident.mean().item(), "seconds": seconds})
    return rows


def evaluate_hairclip_grid(world, n: int = 64, seed: int = 1234, mapper=None, strength: Optional[float] = None,
                           batch: int = 64, progress: bool = False,
                           resume: Optional[os.PathLike] = None) -> List[dict]:
    """HairCLIP text edits of every hairstyle x every colour of its vocabulary at once, on the
    same ``n`` sampled faces. One row per pair: ``style_success`` / ``color_success`` (share of
    the faces whose source differed that now have the target, by the classifier), ``both``
    (both targets reached, all faces), ``preserved`` (the other labels but hat), identity and
    PSNR outside the hair. ``summarize_grid`` averages them per hairstyle, per colour and overall.
    ``resume``: a JSON file that keeps each finished pair's row, as ``evaluate``'s does."""
    from tqdm.auto import tqdm

    styles, colors = hairclip_vocab(world)
    pairs = [(s, c) for s in styles for c in colors]
    key = run_key(world, "hairclip-grid", n, seed, batch, {"mapper": mapper, "strength": strength}) if resume is not None else ""
    saved = _read_partial(Path(resume), key) if resume is not None else {}
    done = sum(f"{s} + {c}" in saved for s, c in pairs)
    if done and progress:
        print(f"resuming the HairCLIP grid from {resume}: {done} of {len(pairs)} pairs done")
    if done < len(pairs):
        w_all, src = _sources(world, n, seed, batch)
        src_hair = _hair(world, src, batch)
        before = predict_labels(world, src)
        others = [k for k in before if k not in ("hairstyle", "hair_color", "hat")]
    rows = []
    for style, color in tqdm(pairs, desc="HairCLIP grid", disable=not progress):
        task = f"{style} + {color}"
        if task in saved:
            rows.append(saved[task])
            continue
        t0 = time.time()
        edit = torch.cat([hairlib.edit(world, w_all[i:i + batch], method="hairclip", mapper=mapper, strength=strength,
                                       hairstyle=style_text(style), color=color_text(color)).images
                          for i in range(0, n, batch)])
        seconds = (time.time() - t0) / n
        after = predict_labels(world, edit)
        row = {"method": "hairclip", "task": task, "n": n}
        hit = {}
        for label, value in (("hairstyle", style), ("hair_color", color)):
            target = value_index(label, value)
            hit[label] = after[label] == target
            todo = before[label] != target
            row["style_success" if label == "hairstyle" else "color_success"] = (
                hit[label][todo].float().mean().item() if todo.any() else float("nan"))
        row["both"] = (hit["hairstyle"] & hit["hair_color"]).float().mean().item()
        row["preserved"] = torch.stack([after[k] == before[k] for k in others], 1).float().mean().item()
        keep = (1 - src_hair) * (1 - _hair(world, edit, batch))
        with torch.no_grad():
            row["identity"] = world.identity_similarity(src, edit).mean().item()
        row["psnr_bg"] = psnr(edit, src, keep).mean().item()
        row["seconds"] = seconds
        rows.append(row)
        if resume is not None:
            saved[task] = row
            _write_partial(Path(resume), key, saved)
    return rows


def summarize_grid(rows: Sequence[dict]) -> List[dict]:
    """``evaluate_hairclip_grid`` rows -> means per hairstyle (over colours), per colour (over
    hairstyles) and over all pairs."""
    import math

    keys = ["style_success", "color_success", "both", "preserved", "identity", "psnr_bg", "seconds"]

    def mean(group, task):
        out = {"method": "hairclip", "task": task, "n": group[0]["n"]}
        for k in keys:
            vals = [r[k] for r in group if not math.isnan(r[k])]
            out[k] = sum(vals) / len(vals) if vals else float("nan")
        return out
    styles = list(dict.fromkeys(r["task"].split(" + ")[0] for r in rows))
    colors = list(dict.fromkeys(r["task"].split(" + ")[1] for r in rows))
    out = [mean([r for r in rows if r["task"].split(" + ")[0] == s], f"{s} (any colour)") for s in styles]
    out += [mean([r for r in rows if r["task"].split(" + ")[1] == c], f"(any style) + {c}") for c in colors]
    return out + [mean(list(rows), f"all {len(rows)} pairs")]


def _label_scores(world, task: EditTask, before: Dict[str, torch.Tensor], after: Dict[str, torch.Tensor]) -> dict:
    """success and preservation from the classifier's predictions before and after."""
    target = value_index(task.attribute, task.value)
    todo = before[task.attribute] != target
    success = (after[task.attribute][todo] == target).float().mean().item() if todo.any() else float("nan")
    others = [k for k in before if k != task.attribute and k not in task.free]
    kept = torch.stack([(after[k] == before[k]) for k in others], 1)  # [n, attributes]
    if "hair_color" in others and "hairstyle" in before:  # a bald head has no hair colour to keep
        bald = HAIRSTYLES.index("bald")
        kept[:, others.index("hair_color")] |= (before["hairstyle"] == bald) | (after["hairstyle"] == bald)
    kept = kept.float()
    return {"success": success, "preserved": kept.mean().item(), "all_kept": kept.all(1).float().mean().item(),
            "kept_by": {k: round(v, 4) for k, v in zip(others, kept.mean(0).tolist())}}


def format_changes(rows: Sequence[dict], top: int = 4) -> str:
    """A markdown table of what else each edit changed: per row, the ``top`` other attributes the
    classifier most often reads differently after the edit (share of faces), from ``kept_by``."""
    lines = ["| method | task | most often changed besides the target (share of faces) |", "|---|---|---|"]
    for r in rows:
        if not r.get("kept_by"):
            continue
        worst = sorted(r["kept_by"].items(), key=lambda kv: kv[1])[:top]
        lines.append(f"| {r['method']} | {r['task']} | " + ", ".join(f"{k} {1 - v:.0%}" for k, v in worst) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def summarize(rows: Sequence[dict]) -> List[dict]:
    """Mean of each measure per method (over its tasks)."""
    out = []
    for m in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == m]
        keys = [k for k in mine[0] if isinstance(mine[0][k], float)]
        out.append({"method": m, "task": f"mean of {len(mine)}", "n": mine[0]["n"],
                    **{k: sum(r[k] for r in mine) / len(mine) for k in keys}})
    return out


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table of ``evaluate`` rows."""
    cols = ["method", "task", "success", "match", "style_success", "color_success", "both", "preserved", "identity",
            "clip", "psnr_bg", "ssim_bg", "seconds"]
    cols = [c for c in cols if any(c in r for r in rows)]
    fmt = {"success": "{:.0%}", "match": "{:.0%}", "style_success": "{:.0%}", "color_success": "{:.0%}", "both": "{:.0%}", "preserved": "{:.0%}", "identity": "{:.3f}", "clip": "{:.3f}", "psnr_bg": "{:.1f}",
           "ssim_bg": "{:.3f}", "seconds": "{:.3f}"}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(fmt[c].format(v) if c in fmt and isinstance(v, float) and v == v else str(v if v == v else "-"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# sentences of several attributes (ManiCLIP)

SENTENCE_METHODS = ("maniclip", "optimize", "global")  # the methods that take a whole sentence


def eval_sentences(k: int, count: int, seed: int = 4321, hair: bool = False) -> List[tuple]:
    """``count`` held-out sentences stating ``k`` attributes of ``k`` different groups (phrasings
    no training sentence uses, ``captions.group_sampled_sentence(split="heldout")``) -> [(sentence,
    {label: value index})]; a gendered subject ("she has ...") states the gender too. ``hair``:
    sentences of the hair group only (k 1: a colour or a hairstyle, 2: both; never bald), which
    HairCLIP can edit too."""
    rng = np.random.default_rng([seed, k] + ([1] if hair else []))
    if not hair:
        return [group_sampled_sentence(rng, k=k, split="heldout", distinct_groups=True) for _ in range(count)]
    out = []
    while len(out) < count:
        text, lab = group_sampled_sentence(rng, k=k, split="heldout")
        stated = set(lab) - {"gender"}
        if stated <= {"hair_color", "hairstyle"} and len(stated) == k and lab.get("hairstyle") != HAIRSTYLES.index("bald"):
            out.append((text, lab))
    return out


def _hairclip_conditions(labels: Dict[str, int]) -> Dict[str, str]:
    """HairCLIP's text conditions for a hair sentence's labels ("<style> hairstyle", "<colour> hair")."""
    kw = {}
    if "hairstyle" in labels:
        kw["hairstyle"] = style_text(HAIRSTYLES[labels["hairstyle"]])
    if "hair_color" in labels:
        kw["color"] = color_text(HAIR_COLORS[labels["hair_color"]])
    return kw


def latent_spread(delta: torch.Tensor, share: float = 0.9) -> torch.Tensor:
    """How many W+ entries an edit moves: per face, the fraction of the entries of ``delta`` [N, L, D]
    (edited minus source latents) that carry ``share`` of its squared norm, largest first
    (ManiCLIP's entropy loss is meant to lower it). 0 for an edit that moves nothing."""
    e = delta.flatten(1).pow(2).sort(1, descending=True)[0]
    total = e.sum(1, keepdim=True)
    needed = ((e.cumsum(1) < share * total).sum(1) + 1).float()
    return torch.where(total[:, 0] > 0, needed / e.shape[1], torch.zeros_like(needed))


def _sentence_scores(world, before: Dict[str, torch.Tensor], after: Dict[str, torch.Tensor],
                     stated: List[Dict[str, int]]) -> dict:
    """reached: the share of (face, stated attribute) pairs the classifier reads as stated after
    the edit; kept: the share of (face, unstated attribute) pairs it reads as before (a hat may
    change with a stated hairstyle; a bald head has no hair colour to keep); accuracy: both
    together over every judged pair (ManiCLIP's attribute accuracy: the target from the text
    where stated, else the reading of the source)."""
    reached, kept = [], []
    bald = HAIRSTYLES.index("bald")
    for i, lab in enumerate(stated):
        for name in LABEL_NAMES:
            if name in lab:
                reached.append(int(after[name][i]) == lab[name])
            elif name == "hat" and "hairstyle" in lab:
                continue
            elif name == "hair_color" and bald in (int(before["hairstyle"][i]), int(after["hairstyle"][i])):
                continue
            else:
                kept.append(int(after[name][i]) == int(before[name][i]))
    return {"reached": float(np.mean(reached)), "kept": float(np.mean(kept)),
            "accuracy": float(np.mean(reached + kept))}


def evaluate_sentences(world, method: str, n: int = 64, ks: Sequence[int] = (1, 2, 3, 4), per_k: int = 8,
                       seed: int = 1234, progress: bool = False, resume: Optional[os.PathLike] = None,
                       hair: bool = False, **kw) -> List[dict]:
    """Edit ``n`` sampled faces toward held-out sentences of ``k`` attributes, for each ``k`` in
    ``ks``: ``per_k`` sentences (``eval_sentences``), each on n / per_k faces. One row per k: the
    stated attributes reached, the unstated ones kept (``_sentence_scores``), identity, PSNR
    outside the hair and face of both images, the W+ entries moved (``latent_spread``; NaN for
    global directions, which edit StyleSpace), seconds per face; on the mini world ``kid``, an
    FID-style distance (KID of the classifier's features) of the edits to ``n`` renders, as
    ManiCLIP's FID measures edits against FFHQ. ``kw`` go to the method;
    ``resume``: as ``evaluate``'s. ``hair``: hair-only sentences (``eval_sentences``, k 1 or 2),
    which HairCLIP edits too (``method="hairclip"``: the sentence's hairstyle and colour as its
    text conditions)."""
    from tqdm.auto import tqdm

    allowed = SENTENCE_METHODS + (("hairclip",) if hair else ())
    if method not in allowed:
        raise ValueError(f"{'hair ' if hair else ''}sentences are edited by {', '.join(allowed)}, not {method!r}")
    if hair and not set(ks) <= {1, 2}:
        raise ValueError(f"a hair sentence states 1 or 2 attributes (colour, hairstyle), not {sorted(ks)}")
    if n % per_k:
        raise ValueError(f"n ({n}) must be a multiple of per_k ({per_k}): each sentence edits n / per_k faces")
    if method == "global" and "directions" not in kw:
        kw = {**kw, "directions": GlobalDirections.for_world(world, progress=progress)}
    key = run_key(world, f"sentences-{method}", n, seed, per_k, {**kw, "ks": list(ks), "hair": hair}) if resume is not None else ""
    saved = _read_partial(Path(resume), key) if resume is not None else {}
    w, src = _sources(world, n, seed, 64)
    before = predict_labels(world, src)
    src_masks = world.masks(src)
    real = _render_features(world, n, seed) if world.name == "mini" else None
    rows = []
    per = n // per_k
    for k in tqdm(ks, desc=f"sentences {method}", disable=not progress):
        if str(k) in saved:
            rows.append(saved[str(k)])
            continue
        images, stated, spread, seconds = [], [], [], 0.0
        for j, (text, lab) in enumerate(eval_sentences(k, per_k, hair=hair)):
            t0 = time.time()
            if method == "hairclip":
                r = hairlib.edit(world, w[j * per:(j + 1) * per], method="hairclip", **_hairclip_conditions(lab), **kw)
            else:
                r = hairlib.edit(world, w[j * per:(j + 1) * per], text, method=method, **kw)
            seconds += time.time() - t0
            images.append(r.images.detach().clamp(-1, 1))
            stated += [lab] * per
            if isinstance(r.latents, torch.Tensor):  # W+ methods (global directions edit StyleSpace)
                spread.append(latent_spread(r.latents.detach().cpu() - w[j * per:(j + 1) * per].cpu()))
        edit = torch.cat(images)
        with torch.no_grad():
            masks = world.masks(edit)
            ident = world.identity_similarity(src, edit)
        keep = outside_hair_and_face(src_masks, masks)
        row = {"method": method, "attributes": k, "n": n,
               **_sentence_scores(world, before, predict_labels(world, edit), stated),
               "identity": ident.mean().item(), "psnr_bg": psnr(edit, src, keep).mean().item(),
               "spread": torch.cat(spread).mean().item() if spread else float("nan"), "seconds": seconds / n,
               "kid": kid(_features(world, edit), real)[0] if real is not None else float("nan")}
        rows.append(row)
        if resume is not None:
            saved[str(k)] = row
            _write_partial(Path(resume), key, saved)
    return rows


SENTENCE_COLUMNS = ["method", "attributes", "n", "reached", "kept", "accuracy", "identity", "psnr_bg", "spread",
                    "kid", "seconds"]


@torch.no_grad()
def _features(world, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([world.classifier.features(images[i:i + batch].to(world.device)).cpu()
                      for i in range(0, len(images), batch)])


def _render_features(world, n: int, seed: int) -> torch.Tensor:
    """The classifier's features of ``n`` renders of the training prior: the mini world's "real" faces."""
    params = R.sample_params(np.random.default_rng([seed, 7]), n=n, split="train")
    return _features(world, R.to_tensor(R.render_batch(params, size=world.generator.size)[0]))


def format_sentence_table(rows: Sequence[dict]) -> str:
    """A markdown table of ``evaluate_sentences`` rows (or their CSV: numbers as text)."""
    def cell(v):
        if isinstance(v, float) or (isinstance(v, str) and ("." in v or v == "nan")):
            return f"{float(v):.3f}"
        return str(v)
    columns = [c for c in SENTENCE_COLUMNS if any(c in r for r in rows)]  # CSVs written before a column existed
    return _markdown(rows, columns, cell)


def _markdown(rows: Sequence[dict], columns: Sequence[str], cell) -> str:
    """A markdown table: ``columns`` as its header, ``cell(value)`` of each row's (missing: "")."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows])


# ---- truth mode: edits of inverted renders judged against the render of the edited parameters ----

TRUTH_SEED = 2468  # the held-out renders truth mode inverts and edits (no recipe reads them)
TRUTH_COLUMNS = ["method", "task", "n", "success", "psnr_truth", "feat_truth", "hair_iou", "color_de", "psnr_keep",
                 "identity", "seconds"]


def truth_sources(world, n: int = 64, seed: int = TRUTH_SEED):
    """``n`` held-out renders of known parameters (no hat, which some hairstyles hide) and their
    inversion by the world -> (params, images [n, 3, S, S], W+)."""
    if world.name != "mini":
        raise ValueError("truth mode needs the mini world's renderer (its faces have known parameters)")
    params = R.sample_params(np.random.default_rng(seed), n=n, split="heldout", hat=0)
    images = R.to_tensor(R.render_batch(params, size=world.generator.size)[0]).to(world.device)
    return params, images, world.invert(images).detach()


def truth_of(params, task: EditTask, size: int) -> torch.Tensor:
    """The true answer to ``task`` for each face: the render of the same parameters with the
    task's attribute set to its value -> [N, 3, size, size]."""
    value = value_index(task.attribute, task.value)
    return R.to_tensor(R.render_batch([p.replace(**{task.attribute: value}) for p in params], size=size)[0])


@torch.no_grad()
def truth_scores(world, src: torch.Tensor, edit: torch.Tensor, truth: torch.Tensor,
                 src_hair: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """An edit against its truth (all [N, 3, S, S] in [-1, 1]): PSNR to the truth; ``feat_truth``,
    the LPIPS-form distance in the classifier trunk's features (per stage, the mean squared
    distance of unit-normalised feature vectors, summed); hair-mask IoU with the truth (the world's
    parser on both); ``color_de``, CIEDE2000 between the mean LAB colours of the two hair regions
    (faces with hair in both); ``psnr_keep``, PSNR against the source outside the hair of the
    source and of the truth (what the edit should leave alone). ``src_hair``: the source's hair
    masks, if already computed."""
    from hairlib.methods.losses import average_lab
    from hairlib.metrics import ciede2000
    from hairlib.mini.world import classifier_features, unit_channels

    feats = classifier_features(world.classifier)
    fe, ft = feats(edit.to(world.device)), feats(truth.to(world.device))
    feat = sum((unit_channels(a) - unit_channels(b)).pow(2).sum(1).mean((1, 2)) for a, b in zip(fe, ft)).cpu()
    h_edit, h_truth = (world.masks(x.to(world.device))["hair"].cpu() for x in (edit, truth))
    h_src = world.masks(src.to(world.device))["hair"].cpu() if src_hair is None else src_hair
    inter, union = (h_edit * h_truth).sum((1, 2, 3)), ((h_edit + h_truth) > 0).float().sum((1, 2, 3))
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    haired = (h_edit.sum((1, 2, 3)) > 0) & (h_truth.sum((1, 2, 3)) > 0)
    de = ciede2000(average_lab(edit.cpu(), h_edit), average_lab(truth.cpu(), h_truth))[haired]
    keep = (1 - h_src) * (1 - h_truth)
    return {"psnr_truth": psnr(edit.cpu(), truth.cpu()).mean().item(), "feat_truth": feat.mean().item(),
            "hair_iou": iou.mean().item(), "color_de": de.mean().item() if len(de) else float("nan"),
            "psnr_keep": psnr(edit.cpu(), src.cpu(), keep).mean().item()}


def evaluate_truth(world, method: str, tasks: Sequence[EditTask] = HAIR_TASKS, n: int = 64, seed: int = TRUTH_SEED,
                   batch: int = 64, progress: bool = False, resume: Optional[os.PathLike] = None,
                   sources=None, **kw) -> List[dict]:
    """Truth mode (mini world): ``n`` held-out renders are inverted, edited by ``method`` toward
    each task, and each edit is judged against the render of the same parameters with the task's
    attribute changed (``truth_scores``), beside the classifier's success on it and identity. The
    first row, ``method="inversion"``, is the floor: the inversions themselves against the source
    renders. ``sources``: ``truth_sources(world, n, seed)`` computed once for several methods.
    ``kw`` and ``resume`` as ``evaluate``'s."""
    from tqdm.auto import tqdm

    if method == "global" and "directions" not in kw:
        kw = {**kw, "directions": GlobalDirections.for_world(world, progress=progress)}
    key = run_key(world, f"truth-{method}", n, seed, batch, kw) if resume is not None else ""
    saved = _read_partial(Path(resume), key) if resume is not None else {}
    params, src, w = sources if sources is not None else truth_sources(world, n, seed)
    if len(params) != n:
        raise ValueError(f"sources hold {len(params)} faces, not n={n}")
    before = predict_labels(world, src)
    src_hair = _hair(world, src, batch).cpu()
    with torch.no_grad():
        recon = torch.cat([world.generate(w[i:i + batch]).clamp(-1, 1) for i in range(0, n, batch)])
    rows = [{"method": "inversion", "task": "-", "n": n, **truth_scores(world, src, recon, src, src_hair),
             "identity": world.identity_similarity(src, recon).mean().item()}]
    for task in tqdm(tasks, desc=f"truth {method}", disable=not progress):
        if repr(task) not in saved:
            done, row = _edit_batches(world, method, w, task, batch, kw), None
            if done is not None:
                edit, seconds = done
                truth = truth_of(params, task, world.generator.size)
                row = {"method": method, "task": task.name, "n": n,
                       "success": _label_scores(world, task, before, predict_labels(world, edit))["success"],
                       **truth_scores(world, src, edit, truth, src_hair),
                       "identity": world.identity_similarity(src, edit).mean().item(), "seconds": seconds / n}
            saved[repr(task)] = row
            if resume is not None:
                _write_partial(Path(resume), key, saved)
        if saved[repr(task)] is not None:
            rows.append(saved[repr(task)])
    return rows


def format_truth_table(rows: Sequence[dict]) -> str:
    """A markdown table of ``evaluate_truth`` rows."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    return _markdown(rows, TRUTH_COLUMNS, cell)
