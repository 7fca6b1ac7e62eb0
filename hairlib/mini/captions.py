"""Captions for mini-world renders: template sentences with synonyms and several phrasings per
attribute, ManiCLIP's group-sampled sentences, zero-shot prompts, and the held-out split.

Splits. ``split="train"`` uses ``TRAIN_TEMPLATES`` and the phrasings in ``vocab.PHRASES``;
``split="heldout"`` uses ``HELDOUT_TEMPLATES`` and ``vocab.HELDOUT_PHRASES`` only. No training
caption contains a held-out phrasing, and no training caption has the shape of a held-out
template; every word of the held-out split occurs in training captions (a CLIP trained from
scratch could not read a word it never saw: held-out means new constructions, not new words).
The held-out attribute combinations (``vocab.HELDOUT_COMBINATIONS``) never occur in training
sentences either. ``heldout_spec()`` is what ``data/heldout.json`` stores.

Group sampling (ManiCLIP's decoupling training, ``PartTextDataset`` in its ``train.py``): pick
one of the five groups, then up to ``k`` attributes from that group, and join their phrases
after "she has" / "he has" / "the person has"; the pronoun sets the gender label.
``distinct_groups=True`` instead takes one attribute from each of ``k`` different groups.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .render import is_heldout_combination
from .vocab import (ATTRIBUTES, FEMALE_ONLY, GROUPS, HAIR_COLOR_WORDS, HAIR_COLORS, HAIRSTYLES,
                    HELDOUT_COMBINATIONS, HELDOUT_PHRASES, LABEL_NAMES, MALE_ONLY, NO_HAIR_COLOR,
                    PERSON_NOUNS, PHRASES, PRONOUNS, value_index, values_of)

__all__ = [
    "caption", "group_sampled_sentence", "attribute_prompts", "value_sentence",
    "plain_sentences", "is_heldout_combination",
    "heldout_spec", "write_heldout_json", "TRAIN_TEMPLATES", "HELDOUT_TEMPLATES",
    "HELDOUT_JSON", "heldout_template_regex",
]

TRAIN_TEMPLATES: Dict[str, Tuple[str, ...]] = {
    # {n}: person noun (may carry an age adjective), {w}: noun phrases, {p}: pronoun
    "with": (
        "a photo of a {n} with {w}.", "a {n} with {w}.", "a picture of a {n} with {w}.",
        "a portrait of a {n} with {w}.", "a close-up photo of a {n} with {w}.",
        "a photo showing a {n} with {w}.", "{p} has {w}.", "this {n} has {w}.",
        "a {n} that has {w}.",
    ),
    # {a}: adjective
    "adj": ("a photo of a {a} {n}.", "a {a} {n}.", "a portrait of a {a} {n}.",
            "a picture of a {a} {n}."),
    # {v}: verb phrase
    "vp": ("a {n} who {v}.", "{p} {v}.", "a photo of a {n} who {v}.", "a {n} that {v}."),
}

HELDOUT_TEMPLATES: Tuple[str, ...] = (
    "the {n} in this picture has {w}.",
    "with {w}, a {n}.",
    "a {n} in a photo, with {w}.",
)

HELDOUT_JSON = Path(__file__).resolve().parents[2] / "data" / "heldout.json"

_SPLITS = ("train", "heldout")


# ---------------------------------------------------------------------------------------------
# helpers

def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


_AN = re.compile(r"\ba (?=[aeiou])")


def _articles(s: str) -> str:
    """'a' -> 'an' before a vowel ("an elderly man", "an individual")."""
    return _AN.sub("an ", s)


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _labels_of(x) -> Dict[str, int]:
    """Labels from a FaceParams or a dict (names or indices, possibly partial)."""
    if hasattr(x, "labels") and callable(x.labels):
        x = x.labels()
    out = {}
    for k, v in dict(x).items():
        if k in LABEL_NAMES and v is not None:
            out[k] = value_index(k, v)
    if out.get("hairstyle") is not None and HAIRSTYLES[out["hairstyle"]] == "bald":
        out["hair_color"] = NO_HAIR_COLOR
    return out


def _gender_key(lab: Mapping[str, int]) -> Optional[str]:
    g = lab.get("gender")
    return None if g is None else ATTRIBUTES["gender"][g]


def _noun(lab, rng, age_adj: bool = True) -> str:
    gk = _gender_key(lab)
    key = gk if (gk is not None and rng.random() < 0.85) else "neutral"
    n = _pick(rng, PERSON_NOUNS[key])
    if age_adj and "age" in lab and rng.random() < 0.5:
        n = _pick(rng, PHRASES["age"][ATTRIBUTES["age"][lab["age"]]]["adj"]) + " " + n
    return n


def _pronoun(lab, rng) -> str:
    gk = _gender_key(lab)
    if gk is None or rng.random() < 0.15:
        return PRONOUNS["neutral"]
    return PRONOUNS[gk]


def _np(attr: str, value: str, rng, split: str) -> str:
    if split == "heldout":
        return _pick(rng, HELDOUT_PHRASES[attr][value])
    return _pick(rng, PHRASES[attr][value]["np"])


def _hair_np(lab, rng, split: str, mode: str) -> Optional[str]:
    """Noun phrase for the hair: mode 'both' (colour and style), 'color', 'style' or 'any'."""
    style = lab.get("hairstyle")
    color = lab.get("hair_color")
    sname = None if style is None else HAIRSTYLES[style]
    cname = None if color is None or color == NO_HAIR_COLOR else HAIR_COLORS[color]
    if sname == "bald":
        return _np("hairstyle", "bald", rng, split)
    if mode == "any":
        mode = "both" if rng.random() < 0.5 else ("color" if rng.random() < 0.4 else "style")
    if sname is None and cname is None:
        return None
    if sname is None or (mode == "color" and cname is not None):
        return _np("hair_color", cname, rng, split)
    if cname is None or mode == "style":
        return _np("hairstyle", sname, rng, split)
    if split == "heldout":
        first, second = ("hairstyle", sname), ("hair_color", cname)
        if rng.random() < 0.5:
            first, second = second, first
        return f"{_np(*first, rng, split)} and {_np(*second, rng, split)}"
    word = _pick(rng, HAIR_COLOR_WORDS[cname])
    combos = PHRASES["hairstyle"][sname]["combo"]
    if rng.random() < 0.25:
        return f"{_np('hair_color', cname, rng, split)} and {_np('hairstyle', sname, rng, split)}"
    return _pick(rng, combos).format(c=word)


def _attr_items(lab, rng, split, p_pos=0.7, p_neg=0.2, exclude=("gender",)) -> List[str]:
    items = []
    names = [a for a in ATTRIBUTES if a in lab and a not in exclude]
    order = rng.permutation(len(names))
    for i in order:
        a = names[int(i)]
        v = ATTRIBUTES[a][lab[a]]
        positive = not (len(ATTRIBUTES[a]) == 2 and ATTRIBUTES[a][0] == "no" and v == "no")
        if rng.random() < (p_pos if positive else p_neg):
            items.append(_np(a, v, rng, split))
    return items


def _fill(rng, split: str, lab, items: Sequence[str], age_adj=True) -> str:
    n = _noun(lab, rng, age_adj)
    w = _join(items)
    if split == "heldout":
        return _pick(rng, HELDOUT_TEMPLATES).format(n=n, w=w)
    t = _pick(rng, TRAIN_TEMPLATES["with"])
    return t.format(n=n, w=w, p=_pronoun(lab, rng))


def _single(attr: str, value: str, lab, rng, split: str) -> str:
    """One attribute value in one sentence, in one of its forms (noun, adjective, verb)."""
    if split == "heldout":
        return _fill(rng, split, lab, [_np(attr, value, rng, split)], age_adj=attr != "age")
    ph = PHRASES[attr][value]
    forms = ["np"] * 3 + ["adj"] * bool(ph.get("adj")) + ["vp"] * bool(ph.get("vp"))
    form = _pick(rng, forms)
    age_adj = attr != "age"
    if form == "np":
        return _fill(rng, split, lab, [_pick(rng, ph["np"])], age_adj)
    n = _noun(lab, rng, age_adj)
    if form == "adj":
        return _pick(rng, TRAIN_TEMPLATES["adj"]).format(a=_pick(rng, ph["adj"]), n=n)
    return _pick(rng, TRAIN_TEMPLATES["vp"]).format(v=_pick(rng, ph["vp"]), n=n,
                                                    p=_pronoun(lab, rng))


# ---------------------------------------------------------------------------------------------
# public API

def caption(params, rng=None, style: str = "full", split: str = "train") -> str:
    """A sentence describing a render (``FaceParams`` or a labels dict, possibly partial).

    style ``"full"``: hair (colour and style) plus a random subset of the face attributes
    (present ones mostly, absent ones sometimes: "no glasses"); ``"hair"``: the hair only
    ("a person with curly red hair", "she has an afro", "a red-haired man"); ``"attr"``: one
    to three face attributes, no hair. Gender shows through the noun or pronoun, age often as
    an adjective. ``split="heldout"`` uses only held-out templates and phrasings."""
    return _articles(_caption(params, rng, style, split))


def _caption(params, rng, style: str, split: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}")
    rng = _rng(rng)
    lab = _labels_of(params)
    if style == "full":
        items = []
        h = _hair_np(lab, rng, split, "both")
        if h:
            items.append(h)
        items += _attr_items(lab, rng, split)
        if not items:
            items = ["a face"] if split == "train" else [_np("age", "young", rng, split)]
        return _fill(rng, split, lab, items)
    if style == "hair":
        h = _hair_np(lab, rng, split, "any")
        if h is None:
            raise ValueError("style='hair' needs hair_color or hairstyle in the labels")
        sname = None if lab.get("hairstyle") is None else HAIRSTYLES[lab["hairstyle"]]
        if split == "train" and rng.random() < 0.25:
            # adjective and verb forms: "a red-haired man", "he has red hair", "a bald man"
            cval = lab.get("hair_color", NO_HAIR_COLOR)
            if sname == "bald":
                return _single("hairstyle", "bald", lab, rng, split)
            if cval != NO_HAIR_COLOR and rng.random() < 0.6:
                return _single("hair_color", HAIR_COLORS[cval], lab, rng, split)
            if sname is not None:
                return _single("hairstyle", sname, lab, rng, split)
        return _fill(rng, split, lab, [h])
    if style == "attr":
        names = [a for a in ATTRIBUTES if a in lab and a != "gender"]
        if not names:
            raise ValueError("style='attr' needs at least one face attribute in the labels")
        k = min(len(names), 1 + int(rng.integers(3)))
        chosen = [names[int(i)] for i in rng.choice(len(names), size=k, replace=False)]
        if k == 1:
            a = chosen[0]
            return _single(a, ATTRIBUTES[a][lab[a]], lab, rng, split)
        items = [_np(a, ATTRIBUTES[a][lab[a]], rng, split) for a in chosen]
        return _fill(rng, split, lab, items, age_adj="age" not in chosen)
    raise ValueError(f"style must be 'full', 'hair' or 'attr', not {style!r}")


def value_sentence(attr: str, value: str, rng=None) -> str:
    """One training-split sentence stating one label's value, in a random training template and
    form (noun phrase, adjective, verb: "a close-up photo of an individual with spectacles.",
    "this person has a toothy smile.", "a smiling face."), about a gender-neutral person (a
    gender's own sentence: mostly that gender's nouns and pronouns)."""
    lab = {"gender": ATTRIBUTES["gender"].index(value)} if attr == "gender" else {}
    return _articles(_single(attr, value, lab, _rng(rng), "train"))


def plain_sentences(exclude: Sequence[str] = ()) -> List[str]:
    """Sentences about a person that state no attribute, in the training templates' frames with a
    gender-neutral noun ("a photo of an individual.", "a face."), minus ``exclude``."""
    frames = [t.replace("{a} ", "") for t in TRAIN_TEMPLATES["adj"]]
    out = [_articles(f.format(n=n)) for f in frames for n in PERSON_NOUNS["neutral"]]
    return [s for s in out if s not in set(exclude)]


def group_sampled_sentence(rng=None, k: int = 3, split: str = "train",
                           distinct_groups: bool = False) -> Tuple[str, Dict[str, int]]:
    """ManiCLIP's group sampling: one group (hair / eye / fashion / others / mouth) drawn
    uniformly, up to ``k`` of its attributes with a value each, joined after "she has" /
    "he has" / "the person has". Returns the sentence and the labels it states (attribute ->
    value index; gender too when the pronoun is gendered). ``distinct_groups=True`` takes one
    attribute from each of ``k`` different groups instead. Training sentences never state a
    held-out combination."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}")
    rng = _rng(rng)
    groups = list(GROUPS)
    for _ in range(1000):
        if distinct_groups:
            gs = [groups[int(i)] for i in rng.choice(len(groups), size=min(k, len(groups)),
                                                      replace=False)]
            attrs = []
            for gname in gs:
                cand = [a for a in GROUPS[gname] if a != "gender"]
                attrs.append(_pick(rng, cand))
        else:
            cand = [a for a in GROUPS[_pick(rng, groups)] if a != "gender"]
            kk = min(k, len(cand))
            attrs = [cand[int(i)] for i in rng.choice(len(cand), size=kk, replace=False)]
        lab: Dict[str, int] = {}
        for a in attrs:
            vals = values_of(a)
            if len(vals) == 2 and vals[0] == "no":
                lab[a] = 1 if rng.random() < 0.8 else 0
            else:
                lab[a] = int(rng.integers(len(vals)))
        if lab.get("hairstyle") is not None and HAIRSTYLES[lab["hairstyle"]] == "bald":
            lab.pop("hair_color", None)
        # pronoun, consistent with gendered attributes
        male_needed = any(lab.get(a) == 1 for a in MALE_ONLY)
        female_needed = any(lab.get(a) == 1 for a in FEMALE_ONLY)
        opts = ["female", "male", "neutral"]
        if male_needed and female_needed:
            continue            # nobody in the mini world has both
        if male_needed:
            opts.remove("female")
        if female_needed:
            opts.remove("male")
        gk = _pick(rng, opts)
        if gk != "neutral":
            lab["gender"] = ATTRIBUTES["gender"].index(gk)
        if split == "train" and is_heldout_combination(lab):
            continue
        phrases = []
        for a in attrs:
            if a in lab:
                phrases.append(_np(a, values_of(a)[lab[a]], rng, split))
        return _articles(f"{PRONOUNS[gk]} has " + ", ".join(phrases)), lab
    raise RuntimeError("group sampling failed")


def attribute_prompts(attr_name: str, split: str = "train") -> Dict[str, List[str]]:
    """Sentences for zero-shot classification of one label: value name -> prompts.

    ``attr_name``: ``"hair_color"`` (colours only, bald has none), ``"hairstyle"`` or a face
    attribute. Train prompts use every training phrasing of the value; held-out prompts every
    held-out phrasing in every held-out template."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}")
    values = values_of(attr_name)
    out: Dict[str, List[str]] = {}
    for v in values:
        if split == "heldout":
            out[v] = [_articles(t.format(n="person", w=h)) for h in HELDOUT_PHRASES[attr_name][v]
                      for t in HELDOUT_TEMPLATES]
            continue
        ph = PHRASES[attr_name][v]
        ps = [f"a photo of a person with {w}." for w in ph["np"]]
        ps += [f"a photo of a {a} person." for a in ph.get("adj", ())]
        ps += [f"a person who {x}." for x in ph.get("vp", ())]
        if attr_name == "gender":
            ps += [f"a photo of a {n}." for n in PERSON_NOUNS[v]]
        out[v] = [_articles(x) for x in ps]
    return out


def heldout_spec() -> dict:
    """The held-out split as stored in ``data/heldout.json``."""
    return {
        "description": (
            "Held-out split of the hairlib mini world. No training recipe may see these "
            "attribute combinations (renders from sample_params(split='train') and training "
            "sentences never contain all pairs of one entry) nor these phrasings and sentence "
            "templates (training captions never contain them). Held-out phrasings reuse "
            "training words in new constructions. Generated from hairlib/mini/vocab.py and "
            "captions.py (hairlib.mini.captions.write_heldout_json); a test keeps them equal."),
        "combinations": [dict(c) for c in HELDOUT_COMBINATIONS],
        "phrasings": {a: {v: list(ps) for v, ps in d.items()} for a, d in HELDOUT_PHRASES.items()},
        "templates": list(HELDOUT_TEMPLATES),
    }


def write_heldout_json(path: Union[str, Path] = HELDOUT_JSON) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(heldout_spec(), indent=2) + "\n")
    return path


def heldout_template_regex(template: str) -> "re.Pattern":
    """A regex matching every sentence a held-out template can produce."""
    parts = re.split(r"\{[nwp]\}", template)
    lit = [re.sub(r"\ba ", "an? ", re.escape(x).replace("\\ ", " ")) for x in parts]
    return re.compile("^" + ".+".join(lit) + "$")
