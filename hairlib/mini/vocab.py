"""The mini world's vocabulary: hair colours, hairstyles, face attributes, their groups, the
words and phrasings that name them, and the held-out split.

Everything else in ``hairlib.mini`` (renderer, captions) and the recipes that train on it read
their names from here, so a value's index is its position in these tuples.

* ``HAIR_COLORS``: 10 of HairCLIP's 12 colours (its list is purple, red, orange, yellow, green,
  blue, gray, brown, black, white, blond, pink; orange and yellow are left out because at 64 px
  they collide with red and blond).
* ``HAIRSTYLES``: 12 styles. ``afro``, ``bob cut``, ``bowl cut``, ``mohawk`` are names from
  HairCLIP's 44-style list (as "<name> hairstyle"); ``short`` is its "short hair"; ``buzz cut``
  stands for its crew cut; the others (long straight, curly, ponytail, bun, bangs, bald) are the
  common styles the design names. Each has a clearly different silhouette at 64 px.
* ``ATTRIBUTES``: face attributes (categorical) in ManiCLIP's five groups (``GROUPS``).

Conflicts the sampler respects (``hairlib.mini.render.sample_params``):

* ``bald`` has no hair colour: ``FaceParams`` still carries a colour index (so an edit from bald to
  another style is defined) but its labels report ``hair_color = NO_HAIR_COLOR`` (-1, an ignore
  index) and captions never name a colour for it.
* ``hat`` is only sampled with ``HAT_STYLES`` (styles whose silhouette stays readable under the
  hat: the sides, length and fringe show below the brim). Afro, mohawk, bun, bowl cut, buzz cut
  and bald never wear a hat in sampled data.
* ``beard`` and ``mustache`` are only sampled on ``gender = male``, ``lipstick`` only on
  ``gender = female``. Gender is a visible attribute (jaw shape, brows, lashes, neckline).
* Held-out combinations (``HELDOUT_COMBINATIONS``) never appear in ``split="train"``.

Phrasings: ``PHRASES[attr][value]`` holds the words captions use: ``np`` noun phrases (after
"with" / "has"), ``adj`` adjectives before the person noun, ``vp`` verb phrases after the subject,
``combo`` (hairstyles) templates joining a colour word. ``HELDOUT_PHRASES[attr][value]`` are
phrasings used only by ``split="heldout"``; they are built from words that training captions do
use (a CLIP trained from scratch cannot know a word it never saw), in orders and constructions
that training captions never contain (the tests check both).
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

__all__ = [
    "HAIR_COLORS", "HAIRSTYLES", "ATTRIBUTES", "GROUPS", "LABEL_NAMES", "NO_HAIR_COLOR",
    "HAT_STYLES", "MALE_ONLY", "FEMALE_ONLY", "HAIR_COLOR_RGB", "HAIR_COLOR_WORDS",
    "PHRASES", "HELDOUT_PHRASES", "HELDOUT_COMBINATIONS", "PERSON_NOUNS", "PRONOUNS",
    "value_index", "value_name", "values_of",
]

HAIR_COLORS: Tuple[str, ...] = (
    "black", "blond", "brown", "red", "gray", "white", "purple", "blue", "green", "pink",
)

# base RGB of each colour (shade and highlight are derived); chosen to stay apart from each
# other at 64 px: gray is mid gray, white near white, blond a saturated golden yellow
HAIR_COLOR_RGB: Dict[str, Tuple[int, int, int]] = {
    "black": (34, 30, 30),
    "blond": (232, 196, 98),
    "brown": (108, 66, 36),
    "red": (190, 48, 28),
    "gray": (132, 132, 138),
    "white": (242, 242, 238),
    "purple": (126, 56, 176),
    "blue": (40, 92, 210),
    "green": (44, 152, 66),
    "pink": (242, 136, 184),
}

HAIRSTYLES: Tuple[str, ...] = (
    "short", "long straight", "curly", "afro", "bob cut", "bowl cut",
    "mohawk", "ponytail", "bun", "bangs", "buzz cut", "bald",
)

ATTRIBUTES: Dict[str, Tuple[str, ...]] = {
    "eyeglasses": ("no", "yes"),
    "eye_color": ("brown", "blue", "green"),
    "hat": ("no", "yes"),
    "earrings": ("no", "yes"),
    "lipstick": ("no", "yes"),
    "smiling": ("no", "yes"),
    "beard": ("no", "yes"),
    "mustache": ("no", "yes"),
    "age": ("young", "old"),
    "gender": ("female", "male"),
}

# ManiCLIP's five groups (hair / eye / fashion / others / mouth). ManiCLIP keeps "male" out of
# the groups and expresses it through the sentence's pronoun; here gender sits in "others" for
# completeness and ``group_sampled_sentence`` likewise expresses it only through the pronoun.
GROUPS: Dict[str, Tuple[str, ...]] = {
    "hair": ("hair_color", "hairstyle"),
    "eye": ("eyeglasses", "eye_color"),
    "fashion": ("hat", "earrings", "lipstick"),
    "others": ("age", "gender"),
    "mouth": ("smiling", "beard", "mustache"),
}

LABEL_NAMES: Tuple[str, ...] = ("hair_color", "hairstyle") + tuple(ATTRIBUTES)
NO_HAIR_COLOR = -1  # hair_color label of a bald head (use as ignore_index)

HAT_STYLES: Tuple[str, ...] = ("short", "long straight", "curly", "bob cut", "ponytail", "bangs")
MALE_ONLY: Tuple[str, ...] = ("beard", "mustache")
FEMALE_ONLY: Tuple[str, ...] = ("lipstick",)


def values_of(name: str) -> Tuple[str, ...]:
    """The value names of a label: ``hair_color``, ``hairstyle`` or an attribute."""
    if name == "hair_color":
        return HAIR_COLORS
    if name == "hairstyle":
        return HAIRSTYLES
    if name in ATTRIBUTES:
        return ATTRIBUTES[name]
    raise KeyError(f"unknown label {name!r}; known: {', '.join(LABEL_NAMES)}")


def value_index(name: str, value) -> int:
    """Index of ``value`` (a name or an int) in label ``name``'s values."""
    vals = values_of(name)
    if isinstance(value, str):
        try:
            return vals.index(value)
        except ValueError:
            raise ValueError(f"{name}: unknown value {value!r}; known: {vals}") from None
    v = int(value)
    if name == "hair_color" and v == NO_HAIR_COLOR:
        return v
    if not 0 <= v < len(vals):
        raise ValueError(f"{name}: index {v} out of range 0..{len(vals) - 1}")
    return v


def value_name(name: str, index: int) -> str:
    if name == "hair_color" and int(index) == NO_HAIR_COLOR:
        return "none"
    return values_of(name)[int(index)]


# ---------------------------------------------------------------------------------------------
# words

# colour words: the first is the canonical name; all are used by training captions
HAIR_COLOR_WORDS: Dict[str, Tuple[str, ...]] = {
    "black": ("black", "jet black", "dark black"),
    "blond": ("blond", "blonde", "golden blond"),
    "brown": ("brown", "brunette", "chestnut brown"),
    "red": ("red", "ginger", "bright red"),
    "gray": ("gray", "grey", "ash gray"),
    "white": ("white", "snow white", "pure white"),
    "purple": ("purple", "violet", "dark purple"),
    "blue": ("blue", "bright blue", "dark blue"),
    "green": ("green", "bright green", "emerald green"),
    "pink": ("pink", "pastel pink", "bright pink"),
}

PERSON_NOUNS: Dict[str, Tuple[str, ...]] = {
    "female": ("woman", "girl", "lady"),
    "male": ("man", "guy", "gentleman"),
    "neutral": ("person", "individual", "face"),
}
PRONOUNS: Dict[str, str] = {"female": "she", "male": "he", "neutral": "the person"}


def _color_phrases() -> Dict[str, Dict[str, Tuple[str, ...]]]:
    out = {}
    for c, words in HAIR_COLOR_WORDS.items():
        out[c] = {
            # "hair which is red": the colour after the noun, as eye colour's "eyes which are blue"
            # (held out: "hair that is red"); without it a colour after a noun only ever meant the eyes
            "np": tuple(f"{w} hair" for w in words) + (f"{c} colored hair", f"hair which is {c}"),
            "adj": (f"{words[0]}-haired", f"{words[1]}-haired"),
            "vp": (f"has {words[0]} hair", f"has {words[1]} hair"),
            "word": words,
        }
    return out


# Every part of the face that a negative phrasing names ("bare ears", "a bare upper lip", "a closed
# mouth", "smooth skin") a positive phrasing names too ("earrings in both ears", "a hairy upper lip", "a
# smiling mouth", "wrinkled skin"): otherwise the part's word alone teaches the text tower "no", and a
# held-out phrasing that names it ("earrings on the ears") reads as the attribute's absence.
PHRASES: Dict[str, Dict[str, Dict[str, Tuple[str, ...]]]] = {
    "hair_color": _color_phrases(),
    "hairstyle": {
        "short": {"np": ("short hair", "a short haircut", "short cropped hair", "a short hairstyle",
                         "neatly styled short hair"),
                  "adj": ("short-haired",),
                  "combo": ("short {c} hair", "a short {c} haircut")},
        "long straight": {"np": ("long straight hair", "straight long hair", "long sleek hair",
                                 "a long straight hairstyle"),
                          "adj": ("long-haired",),
                          "combo": ("long straight {c} hair", "straight long {c} hair")},
        "curly": {"np": ("curly hair", "curls", "a curly hairstyle", "voluminous curls"),
                  "adj": ("curly-haired",),
                  "combo": ("curly {c} hair", "{c} curls")},
        "afro": {"np": ("an afro", "an afro hairstyle", "afro hair", "a big afro"),
                 "adj": (),
                 "combo": ("a {c} afro", "{c} afro hair")},
        "bob cut": {"np": ("a bob cut", "a bob cut hairstyle", "a bob", "hair in a bob cut"),
                    "adj": (),
                    "combo": ("a {c} bob cut", "{c} hair in a bob cut")},
        "bowl cut": {"np": ("a bowl cut", "a bowl cut hairstyle", "a bowl haircut"),
                     "adj": (),
                     "combo": ("a {c} bowl cut", "{c} hair in a bowl cut")},
        "mohawk": {"np": ("a mohawk", "a mohawk hairstyle", "a punk mohawk"),
                   "adj": (),
                   "combo": ("a {c} mohawk",)},
        "ponytail": {"np": ("a ponytail", "hair tied in a ponytail", "a ponytail hairstyle"),
                     "adj": (),
                     "combo": ("a {c} ponytail", "{c} hair tied in a ponytail")},
        "bun": {"np": ("a bun", "a hair bun", "hair tied in a bun", "a bun hairstyle"),
                "adj": (),
                "combo": ("a {c} bun", "{c} hair tied in a bun")},
        "bangs": {"np": ("bangs", "a fringe", "long hair with bangs", "a bangs hairstyle"),
                  "adj": (),
                  "combo": ("{c} hair with bangs", "{c} bangs")},
        "buzz cut": {"np": ("a buzz cut", "a buzzcut", "a buzz cut hairstyle"),
                     "adj": (),
                     "combo": ("a {c} buzz cut",)},
        "bald": {"np": ("a bald head", "no hair", "a bald hairstyle", "a shiny bald head"),
                 "adj": ("bald",),
                 "combo": ()},
    },
    "eyeglasses": {
        "yes": {"np": ("glasses", "eyeglasses", "spectacles", "a pair of spectacles"),
                "adj": ("bespectacled",), "vp": ("wears glasses", "is wearing eyeglasses")},
        "no": {"np": ("no glasses", "no eyeglasses"),
               "adj": (),
               "vp": ("is not wearing glasses", "wears no glasses", "is without glasses")},
    },
    "eye_color": {
        c: {"np": (f"{c} eyes", f"bright {c} eyes", f"eyes which are {c}"),
            "adj": (f"{c}-eyed",), "vp": (f"has {c} eyes",)}
        for c in ("brown", "blue", "green")
    },
    "hat": {
        "yes": {"np": ("a hat", "a brimmed hat", "a hat with a band"),
                "adj": (), "vp": ("wears a hat", "is wearing a hat", "has a hat on")},
        "no": {"np": ("no hat",), "adj": ("bareheaded",),
               "vp": ("is not wearing a hat", "does not wear a hat")},
    },
    "earrings": {
        "yes": {"np": ("earrings", "a pair of earrings", "round earrings", "earrings in both ears"),
                "adj": (), "vp": ("wears earrings", "is wearing earrings")},
        "no": {"np": ("no earrings", "bare ears"), "adj": (),
               "vp": ("is not wearing earrings", "is without earrings")},
    },
    "lipstick": {
        "yes": {"np": ("lipstick", "bright lipstick", "painted lips"),
                "adj": (), "vp": ("wears lipstick", "is wearing lipstick")},
        "no": {"np": ("no lipstick", "natural lips", "bare lips"), "adj": (),
               "vp": ("is not wearing lipstick",)},
    },
    "smiling": {
        "yes": {"np": ("a smile", "a big smile", "a toothy smile", "a smile with teeth", "a smiling mouth"),
                "adj": ("smiling",), "vp": ("is smiling", "smiles")},
        "no": {"np": ("a neutral expression", "a closed mouth", "a serious expression"),
               "adj": ("serious",), "vp": ("is not smiling",)},
    },
    "beard": {
        "yes": {"np": ("a beard", "a full beard", "a beard on his chin"),
                "adj": ("bearded",), "vp": ("has a beard",)},
        "no": {"np": ("no beard", "a beardless chin"), "adj": ("beardless",),
               "vp": ("has no beard",)},
    },
    "mustache": {
        "yes": {"np": ("a mustache", "a moustache", "a thick mustache", "a hairy upper lip"),
                "adj": ("mustachioed",), "vp": ("has a mustache",)},
        "no": {"np": ("no mustache", "no moustache", "a bare upper lip"), "adj": (),
               "vp": ("has no mustache",)},
    },
    "age": {
        "young": {"np": ("a young face", "a youthful face", "smooth skin", "no wrinkles"),
                  "adj": ("young", "youthful"), "vp": ()},
        "old": {"np": ("an old face", "wrinkles", "a wrinkled face", "wrinkled skin"),
                "adj": ("old", "elderly"), "vp": ()},
    },
    "gender": {
        "female": {"np": ("a female face",), "adj": ("female",), "vp": ()},
        "male": {"np": ("a male face",), "adj": ("male",), "vp": ()},
    },
}

# Held out: each value keeps phrasings only the heldout split uses. They reuse training words
# in constructions the training captions never contain ("hair that is red", "hair styled in an
# afro", "does not wear glasses", ...). Captions use them as noun phrases after "with"/"has".
HELDOUT_PHRASES: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "hair_color": {c: (f"hair that is {c}", f"hair colored {c}") for c in HAIR_COLORS},
    "hairstyle": {
        "short": ("hair styled short", "hair that is short"),
        "long straight": ("hair that is long and straight",),
        "curly": ("hair that is curly",),
        "afro": ("hair styled in an afro",),
        "bob cut": ("hair styled in a bob cut",),
        "bowl cut": ("hair styled in a bowl cut",),
        "mohawk": ("hair styled in a mohawk",),
        "ponytail": ("hair styled in a ponytail",),
        "bun": ("hair styled in a bun",),
        "bangs": ("hair styled with bangs",),
        "buzz cut": ("hair styled in a buzz cut",),
        "bald": ("a head without hair",),
    },
    "eyeglasses": {"yes": ("a pair of glasses",), "no": ("eyes without glasses",)},
    "eye_color": {c: (f"eyes that are {c}",) for c in ("brown", "blue", "green")},
    "hat": {"yes": ("a hat on the head",), "no": ("a head without a hat",)},
    "earrings": {"yes": ("earrings on the ears",), "no": ("ears without earrings",)},
    "lipstick": {"yes": ("lips with lipstick",), "no": ("lips without lipstick",)},
    "smiling": {"yes": ("a smile showing teeth",), "no": ("a mouth that is closed",)},
    "beard": {"yes": ("a beard on the chin",), "no": ("a chin without a beard",)},
    "mustache": {"yes": ("a mustache on the upper lip",),
                 "no": ("an upper lip without a mustache",)},
    "age": {"young": ("a face without wrinkles",), "old": ("a face that is old",)},
    "gender": {"female": ("a face that is female",), "male": ("a face that is male",)},
}

# Held-out attribute combinations: no training sample (render or sentence) contains all the
# pairs of one entry. Values are names.
HELDOUT_COMBINATIONS: Tuple[Mapping[str, str], ...] = (
    {"hairstyle": "afro", "hair_color": "green"},
    {"hairstyle": "mohawk", "hair_color": "blond"},
    {"hairstyle": "bob cut", "hair_color": "purple"},
    {"hairstyle": "bun", "hair_color": "red"},
    {"hairstyle": "curly", "hair_color": "gray"},
    {"hairstyle": "bangs", "hair_color": "blue"},
    {"hairstyle": "buzz cut", "hair_color": "pink"},
    {"hairstyle": "long straight", "hair_color": "white"},
    {"hairstyle": "ponytail", "eyeglasses": "yes"},
    {"eyeglasses": "yes", "lipstick": "yes"},
    {"beard": "yes", "earrings": "yes"},
    {"age": "old", "hat": "yes"},
    {"mustache": "yes", "eye_color": "blue"},
)
