"""A procedural 2-D face renderer: the mini world's "camera".

``render(params)`` draws a face from a ``FaceParams`` record, deterministically: the same record
gives a byte-identical image. Shapes are drawn with PIL on a ``supersample``x canvas as indices
into a per-image palette (one index per part: skin, iris, hair, hat, ...), the palette turns the
index canvas into colour, and a box filter (``Image.reduce``) brings it to ``size`` px. The same
index canvas gives exact masks.

Masks (``RenderResult.masks``: bool [H, W], mutually exclusive, covering the image):

* ``hair``: every output pixel that any visible hair sub-sample touches (so a hair-only edit
  changes pixels only inside the union of the two hair masks; a hair colour change only
  inside the hair mask).
* ``face``: the rest of the person: skin, facial features, facial hair (beard, mustache,
  eyebrows: they are not head hair and keep their own colour), neck, clothes and accessories
  (eyeglasses, earrings and the hat are drawn over the hair and count as face: a hair edit must
  leave them alone). A pixel is face when no hair touches it and >= half its sub-samples are
  person.
* ``background``: the rest.

``RenderResult.parts`` is a finer label map (``PARTS``), taken at each pixel's centre sub-sample.

Layers, back to front: background, clothes, back hair (long hair, afro, curls, ponytail),
neck, ears, face, wrinkles, eyes, brows, nose, beard, mouth, mustache, front hair, hat,
eyeglasses, earrings. Nothing but the hair layers depends on the hair parameters, which is what
makes hair edits exact.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw

from .vocab import (ATTRIBUTES, FEMALE_ONLY, HAIR_COLOR_RGB, HAIR_COLORS, HAIRSTYLES, HAT_STYLES, HELDOUT_COMBINATIONS,
                    LABEL_NAMES, MALE_ONLY, NO_HAIR_COLOR, value_index, value_name, values_of)

__all__ = [
    "FaceParams", "RenderResult", "sample_params", "params_from_uniforms", "PRIOR_SLOTS", "render",
    "params_features", "PARAM_FEATURES",
    "render_batch", "to_tensor", "from_tensor", "is_heldout_combination", "heldout_combination_index", "contact_sheet", "PARTS",
    "IDENTITY_FIELDS", "HAIR_FIELDS", "BACKGROUNDS", "CLOTHES", "HAT_COLORS", "write_renders",
]

# ---------------------------------------------------------------------------------------------
# palettes of the nuisance parameters

BACKGROUNDS = (
    ("sky", (163, 190, 222)), ("sage", (168, 196, 164)), ("sand", (222, 206, 170)),
    ("lavender", (190, 178, 214)), ("rose", (222, 182, 182)), ("slate", (118, 132, 156)),
    ("mint", (168, 208, 188)), ("teal", (136, 184, 186)),
)
CLOTHES = (
    ("navy", (52, 66, 110)), ("maroon", (116, 44, 52)), ("olive", (76, 98, 64)),
    ("charcoal", (78, 78, 86)), ("khaki", (172, 152, 118)), ("white", (232, 232, 228)),
    ("teal", (56, 116, 140)), ("plum", (120, 76, 112)),
)
HAT_COLORS = (
    ("navy", (40, 48, 86)), ("brick", (150, 46, 40)), ("forest", (56, 92, 60)),
    ("tan", (196, 168, 112)), ("charcoal", (62, 62, 68)), ("cream", (228, 222, 206)),
)
GLASSES_DARK = ((22, 22, 26), (80, 46, 26), (30, 40, 104), (112, 26, 38))
GLASSES_LIGHT = ((216, 180, 72), (204, 206, 214), (236, 236, 236), (226, 150, 60))
EARRINGS = (((244, 198, 48), (92, 62, 14)), ((216, 220, 230), (58, 60, 74)))
SKIN_STOPS = np.array([(246, 218, 198), (234, 192, 160), (204, 152, 114), (160, 110, 78),
                       (112, 74, 52)], dtype=np.float64)
BROW_STOPS = np.array([(128, 92, 58), (80, 54, 34), (32, 26, 24)], dtype=np.float64)
IRIS = ((118, 62, 26), (58, 128, 232), (48, 170, 72))

# ---------------------------------------------------------------------------------------------
# palette indices: 0 background, 1..127 person (not hair), 128..255 hair

BG = 0
SKIN, SKIN_SHADE, SKIN_LIGHT, EAR_SHADE, WRINKLE, NOSTRIL, NECK_SHADE = 1, 2, 3, 4, 5, 6, 7
EYE_WHITE, IRIS_I, PUPIL, EYE_LINE, BROW = 10, 11, 12, 13, 14
LIP, MOUTH_IN, TEETH, FACIAL_HAIR = 20, 21, 22, 23
GLASSES, EARRING, EARRING_RIM, HAT, HAT_BAND, CLOTHES_I, CLOTHES_SHADE = 30, 31, 32, 33, 34, 35, 36
HAIR, HAIR_SHADE, HAIR_LIGHT = 128, 129, 130

PARTS = ("background", "skin", "eyes", "brows", "mouth", "facial_hair", "glasses", "earrings",
         "hat", "clothes", "hair")
_PART_OF = {BG: 0, SKIN: 1, SKIN_SHADE: 1, SKIN_LIGHT: 1, EAR_SHADE: 1, WRINKLE: 1, NOSTRIL: 1,
            NECK_SHADE: 1, EYE_WHITE: 2, IRIS_I: 2, PUPIL: 2, EYE_LINE: 2, BROW: 3, LIP: 4,
            MOUTH_IN: 4, TEETH: 4, FACIAL_HAIR: 5, GLASSES: 6, EARRING: 7, EARRING_RIM: 7,
            HAT: 8, HAT_BAND: 8, CLOTHES_I: 9, CLOTHES_SHADE: 9}
_PART_LUT = np.ones(256, dtype=np.uint8)
for _i, _p in _PART_OF.items():
    _PART_LUT[_i] = _p
_PART_LUT[128:] = PARTS.index("hair")

# class palette: hair -> red, background -> green, person -> blue; after the box filter the
# channels are the sub-sample fractions (x255, rounded)
_CLASS_PAL = np.zeros((256, 3), dtype=np.uint8)
_CLASS_PAL[0] = (0, 255, 0)
_CLASS_PAL[1:128] = (0, 0, 255)
_CLASS_PAL[128:] = (255, 0, 0)
_CLASS_PAL_BYTES = _CLASS_PAL.tobytes()

# ---------------------------------------------------------------------------------------------
# parameters

IDENTITY_FIELDS = (
    "face_width", "face_length", "jaw", "chin", "skin_tone", "eye_spacing", "eye_size",
    "eye_height", "brow_height", "nose_length", "nose_width", "mouth_width", "lip_fullness",
    "ear_size", "brow_tone", "neck_width",
)
HAIR_FIELDS = ("hair_color", "hairstyle", "hair_side", "hair_tint", "hair_volume")
_CATEGORICAL = ("hair_color", "hairstyle") + tuple(ATTRIBUTES)
_NUISANCE_INT = {"hair_side": 2, "glasses_color": 4, "hat_color": len(HAT_COLORS),
                 "earring_color": len(EARRINGS), "clothes": len(CLOTHES),
                 "background": len(BACKGROUNDS)}


@dataclass(frozen=True)
class FaceParams:
    """Every parameter of one render. Floats: identity fields in [0, 1]; ``hair_tint``,
    ``bg_gradient``, ``dx``, ``dy``, ``scale``, ``roll`` in [-1, 1]; ``hair_volume`` in [0, 1].
    Categorical fields are indices into the vocabulary (``hairlib.mini.vocab``); names are
    accepted too (``FaceParams(hairstyle="afro")``, ``p.replace(hair_color="red")``).

    ``hair_color`` is kept for bald heads (so bald -> afro is defined) but ``labels()`` reports
    ``NO_HAIR_COLOR`` (-1) for them."""

    # identity
    face_width: float = 0.5
    face_length: float = 0.5
    jaw: float = 0.5
    chin: float = 0.5
    skin_tone: float = 0.3
    eye_spacing: float = 0.5
    eye_size: float = 0.5
    eye_height: float = 0.5
    brow_height: float = 0.5
    nose_length: float = 0.5
    nose_width: float = 0.5
    mouth_width: float = 0.5
    lip_fullness: float = 0.5
    ear_size: float = 0.5
    brow_tone: float = 0.5
    neck_width: float = 0.5
    # hair
    hair_color: int = 0
    hairstyle: int = 0
    hair_side: int = 0
    hair_tint: float = 0.0
    hair_volume: float = 0.5
    # face attributes
    eyeglasses: int = 0
    eye_color: int = 0
    hat: int = 0
    earrings: int = 0
    lipstick: int = 0
    smiling: int = 0
    beard: int = 0
    mustache: int = 0
    age: int = 0
    gender: int = 0
    # accessories and clothes (not labels)
    glasses_color: int = 0
    hat_color: int = 0
    earring_color: int = 0
    clothes: int = 0
    # scene and pose
    background: int = 0
    bg_gradient: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 0.0
    roll: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in _CATEGORICAL:
                v = value_index(f.name, v)
                if f.name == "hair_color" and v == NO_HAIR_COLOR:
                    raise ValueError("FaceParams.hair_color must be a colour (bald keeps one)")
            elif f.name in _NUISANCE_INT:
                v = int(v)
                if not 0 <= v < _NUISANCE_INT[f.name]:
                    raise ValueError(f"{f.name}={v} out of range 0..{_NUISANCE_INT[f.name] - 1}")
            else:
                v = float(v)
                if not math.isfinite(v):
                    raise ValueError(f"{f.name} must be finite")
            object.__setattr__(self, f.name, v)

    # -- conversions
    def to_dict(self) -> Dict[str, Union[int, float]]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Dict) -> "FaceParams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise KeyError(f"unknown FaceParams fields: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes) -> "FaceParams":
        """A copy with some fields changed (names or indices), e.g. same person, new hair."""
        return dataclasses.replace(self, **changes)

    def labels(self) -> Dict[str, int]:
        """``hair_color``, ``hairstyle`` and every attribute, as indices (hair_color -1 when
        bald)."""
        out = {name: getattr(self, name) for name in LABEL_NAMES}
        if HAIRSTYLES[self.hairstyle] == "bald":
            out["hair_color"] = NO_HAIR_COLOR
        return out

    def label_names(self) -> Dict[str, str]:
        return {k: value_name(k, v) for k, v in self.labels().items()}

    def identity(self) -> np.ndarray:
        """The identity parameters (``IDENTITY_FIELDS``) as float32 in [0, 1]."""
        return np.array([getattr(self, k) for k in IDENTITY_FIELDS], dtype=np.float32)


@dataclass
class RenderResult:
    image: np.ndarray                 # uint8 [H, W, 3]
    masks: Dict[str, np.ndarray]      # "hair", "face", "background": bool [H, W]
    labels: Dict[str, int]
    parts: np.ndarray                 # uint8 [H, W], indices into PARTS


# ---------------------------------------------------------------------------------------------
# held-out combinations and the sampler

def _combo_indices():
    return [{k: value_index(k, v) for k, v in c.items()} for c in HELDOUT_COMBINATIONS]


_HELDOUT_IDX = _combo_indices()


def is_heldout_combination(labels) -> bool:
    """True when ``labels`` (a dict of names or indices, possibly partial, or a FaceParams)
    contains every pair of one held-out combination (``vocab.HELDOUT_COMBINATIONS``)."""
    if isinstance(labels, FaceParams):
        labels = labels.labels()
    lab = {}
    for k, v in dict(labels).items():
        if k in LABEL_NAMES and v is not None:
            lab[k] = value_index(k, v)
    if lab.get("hairstyle") is not None and HAIRSTYLES[lab["hairstyle"]] == "bald":
        lab["hair_color"] = NO_HAIR_COLOR
    for combo in _HELDOUT_IDX:
        if all(lab.get(k) == v for k, v in combo.items()):
            return True
    return False


def heldout_combination_index(labels) -> np.ndarray:
    """For label arrays (``render_batch``'s ``{name: [N]}``), the index into
    ``vocab.HELDOUT_COMBINATIONS`` of the first held-out combination each render carries, -1 for
    none (every training render)."""
    lab = {k: np.asarray(v) for k, v in labels.items()}
    n = len(next(iter(lab.values())))
    out = np.full(n, -1)
    for j, combo in enumerate(_HELDOUT_IDX):
        hit = np.all([lab[k] == v for k, v in combo.items()], axis=0) & (out < 0)
        out[hit] = j
    return out


_HAT_OK = frozenset(HAIRSTYLES.index(s) for s in HAT_STYLES)
# the sampler's probabilities (``_draw_one``); hairstyle, hair colour, eye colour and the
# accessories' colours are uniform
P_MALE = 0.5
P_EYEGLASSES = 0.3
P_HAT = 0.25  # on HAT_STYLES only
P_EARRINGS = (0.4, 0.15)  # female, male
P_LIPSTICK = 0.45  # female only
P_BEARD = P_MUSTACHE = 0.4  # male only
P_OLD = 0.4


def _violates(d: Dict, fixed: Dict) -> bool:
    """Sampler constraints, ignored where every variable involved was fixed by the caller."""
    def free(*names):
        return any(n not in fixed for n in names)
    if d["hat"] and d["hairstyle"] not in _HAT_OK and free("hat", "hairstyle"):
        return True
    male = d["gender"] == 1
    for a in MALE_ONLY:
        if d[a] and not male and free(a, "gender"):
            return True
    for a in FEMALE_ONLY:
        if d[a] and male and free(a, "gender"):
            return True
    return False


class _Uniforms:
    """A stand-in for ``np.random.Generator`` in ``_draw_one`` that serves fixed numbers: each
    field of ``FaceParams`` reads its own slots of ``u`` (``_SLOTS``), whatever the other fields
    drew. ``random()`` takes one slot; ``integers(k)`` descends a binary tree over the k values,
    one slot per level (left when the slot is below the left half's share), so that each slot is
    a yes/no question rather than one number cut into k pieces."""

    def __init__(self, u: np.ndarray):
        if u.shape != (PRIOR_SLOTS,):
            raise ValueError(f"expected {PRIOR_SLOTS} uniforms per face, got shape {tuple(u.shape)}")
        self.u, self.i, self.end = u, 0, 0

    def field(self, name: str) -> None:
        self.i, self.end = _SLOTS[name]

    def random(self) -> float:
        if self.i >= self.end:
            raise RuntimeError("a field drew more numbers than its slots in render._SLOTS")
        self.i += 1
        return float(self.u[self.i - 1])

    def integers(self, k: int) -> int:
        lo, hi = 0, int(k)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.random() < (mid - lo) / (hi - lo):
                hi = mid
            else:
                lo = mid
        return lo


def _draw_one(rng, fixed: Dict) -> Dict:
    """One draw; pinned fields are set before the fields that depend on them are drawn. ``rng``:
    a ``np.random.Generator`` or ``_Uniforms``."""
    u = rng.random
    d: Dict = {}
    at = getattr(rng, "field", None)

    def pick(name, draw):
        if name in fixed:
            d[name] = fixed[name]
            return
        if at is not None:
            at(name)
        d[name] = draw()

    for k in IDENTITY_FIELDS:
        pick(k, lambda: float(u()))
    pick("gender", lambda: int(u() < P_MALE))
    pick("hairstyle", lambda: int(rng.integers(len(HAIRSTYLES))))
    male = d["gender"] == 1
    pick("hair_color", lambda: int(rng.integers(len(HAIR_COLORS))))
    pick("hair_side", lambda: int(u() < 0.5))
    pick("hair_tint", lambda: float(u() * 2 - 1))
    pick("hair_volume", lambda: float(u()))
    pick("eyeglasses", lambda: int(u() < P_EYEGLASSES))
    pick("eye_color", lambda: int(rng.integers(3)))
    pick("hat", lambda: int(d["hairstyle"] in _HAT_OK and u() < P_HAT))
    pick("earrings", lambda: int(u() < P_EARRINGS[male]))
    pick("lipstick", lambda: int(not male and u() < P_LIPSTICK))
    pick("smiling", lambda: int(u() < 0.5))
    pick("beard", lambda: int(male and u() < P_BEARD))
    pick("mustache", lambda: int(male and u() < P_MUSTACHE))
    pick("age", lambda: int(u() < P_OLD))
    pick("glasses_color", lambda: int(rng.integers(4)))
    pick("hat_color", lambda: int(rng.integers(len(HAT_COLORS))))
    pick("earring_color", lambda: int(rng.integers(len(EARRINGS))))
    pick("clothes", lambda: int(rng.integers(len(CLOTHES))))
    pick("background", lambda: int(rng.integers(len(BACKGROUNDS))))
    pick("bg_gradient", lambda: float(0.0 if u() < 0.5 else u() * 2 - 1))
    for k in ("dx", "dy", "scale", "roll"):
        pick(k, lambda: float(u() * 2 - 1))
    return d


def _sample_one(rng, fixed: Dict, split: Optional[str]) -> FaceParams:
    fixed = dict(fixed)
    if split == "heldout":
        combos = []
        for c in _HELDOUT_IDX:
            if all(fixed.get(k, v) == v for k, v in c.items()):
                combos.append(c)
        if not combos:
            raise ValueError(f"no held-out combination is compatible with {fixed}")
        fixed.update(combos[int(rng.integers(len(combos)))])
    elif split == "train" and is_heldout_combination(fixed):
        raise ValueError(f"{fixed} is a held-out combination; use split='heldout' or None")
    for _ in range(10000):
        d = _draw_one(rng, fixed)
        if _violates(d, fixed):
            continue
        if split == "train" and is_heldout_combination(d):
            continue
        return FaceParams(**d)
    raise RuntimeError(f"could not sample parameters compatible with {fixed} (split={split})")


def _levels(k: int) -> int:
    return max(1, (int(k) - 1).bit_length())


# slots per field for params_from_uniforms: categorical fields one per level of their binary tree
# (their numbers of values as _draw_one draws them), bg_gradient two draws, the rest one
_SLOT_COUNTS = {f.name: 1 for f in dataclasses.fields(FaceParams)}
_SLOT_COUNTS.update({"hairstyle": _levels(len(HAIRSTYLES)), "hair_color": _levels(len(HAIR_COLORS)),
                     "eye_color": _levels(3), "glasses_color": _levels(4), "hat_color": _levels(len(HAT_COLORS)),
                     "earring_color": _levels(len(EARRINGS)), "clothes": _levels(len(CLOTHES)),
                     "background": _levels(len(BACKGROUNDS)), "bg_gradient": 2})
_SLOTS: Dict[str, tuple] = {}
for _name, _n in _SLOT_COUNTS.items():
    _start = sum(b - a for a, b in _SLOTS.values())
    _SLOTS[_name] = (_start, _start + _n)
del _name, _n, _start
PRIOR_SLOTS = sum(_SLOT_COUNTS.values())  # uniforms per face of ``params_from_uniforms``

# the fields that held-out combinations and the sampler's conflict rules tie together, in the
# order ``params_from_uniforms(split="train")`` draws them
_TIED = ("gender", "hairstyle", "hair_color", "eyeglasses", "eye_color", "hat", "earrings", "lipstick",
         "beard", "mustache", "age")
_TIED_TABLES: list = []


def _tied_tables() -> list:
    """Tables of the train split's joint law of ``_TIED``: entry j [K_0, ..., K_j] holds the
    probability of each prefix (x_0 .. x_j), the later fields summed out."""
    if _TIED_TABLES:
        return _TIED_TABLES
    sizes = [len(values_of(k)) for k in _TIED]
    bern = lambda q: np.array([1 - q, q])  # noqa: E731
    shape = lambda *axes: [sizes[_TIED.index(k)] if k in axes else 1 for k in _TIED]  # noqa: E731
    hat_ok = np.array([h in _HAT_OK for h in range(len(HAIRSTYLES))], dtype=float)
    uniform = lambda k: np.full(sizes[_TIED.index(k)], 1.0 / sizes[_TIED.index(k)]).reshape(shape(k))  # noqa: E731
    terms = [
        bern(P_MALE).reshape(shape("gender")), uniform("hairstyle"), uniform("hair_color"),
        bern(P_EYEGLASSES).reshape(shape("eyeglasses")), uniform("eye_color"),
        np.stack([1 - hat_ok * P_HAT, hat_ok * P_HAT], 1).reshape(shape("hairstyle", "hat")),
        np.stack([bern(P_EARRINGS[0]), bern(P_EARRINGS[1])]).reshape(shape("gender", "earrings")),
        np.stack([bern(P_LIPSTICK), bern(0.0)]).reshape(shape("gender", "lipstick")),
        np.stack([bern(0.0), bern(P_BEARD)]).reshape(shape("gender", "beard")),
        np.stack([bern(0.0), bern(P_MUSTACHE)]).reshape(shape("gender", "mustache")),
        bern(P_OLD).reshape(shape("age")),
    ]
    joint = np.ones(sizes)
    for t in terms:
        joint = joint * t
    for idx in zip(*np.nonzero(joint)):
        if is_heldout_combination(dict(zip(_TIED, (int(i) for i in idx)))):
            joint[idx] = 0.0
    tables = [joint]
    for _ in range(len(_TIED) - 1):
        tables.insert(0, tables[0].sum(-1))
    _TIED_TABLES.extend(tables)
    return _TIED_TABLES


def _tree_draw(mass: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Rows of (unnormalised) masses [n, k] and uniforms [n, levels] -> one value per row, by the
    binary tree of ``_Uniforms.integers`` with each left share taken from the masses: exact
    draws from each row's law."""
    n, k = mass.shape
    c = np.concatenate([np.zeros((n, 1)), np.cumsum(mass, 1)], 1)
    lo, hi, rows = np.zeros(n, dtype=int), np.full(n, k), np.arange(n)
    for level in range(_levels(k)):
        mid = (lo + hi) // 2
        share = (c[rows, mid] - c[rows, lo]) / np.maximum(c[rows, hi] - c[rows, lo], 1e-300)
        left = u[:, level] < share
        split = hi - lo > 1
        hi = np.where(split & left, mid, hi)
        lo = np.where(split & ~left, mid, lo)
    return lo


def params_from_uniforms(u, split: Optional[str] = "train") -> list:
    """The sampler as a function: ``u`` [n, PRIOR_SLOTS] in [0, 1) -> n ``FaceParams``, each
    field a step or linear function of its own slots (``_SLOTS``; a categorical field reads one
    slot per level of a binary tree over its values), so that i.i.d. uniform rows follow
    ``sample_params(split=split)``'s distribution exactly.

    ``split=None``: every field by ``sample_params``'s own rules. ``"train"``: the fields that
    held-out combinations tie (``_TIED``) are drawn one after the other from their exact
    conditional laws given the earlier ones (the chain rule of the train split's joint law), so
    no row is a held-out combination and none is rejected; the rest as for ``None``.
    ``hairlib.mini.prior`` turns StyleGAN's z into such rows."""
    if split not in ("train", "all", None):
        raise ValueError(f"split must be 'train' or None, not {split!r}")
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] != PRIOR_SLOTS:
        raise ValueError(f"expected uniforms of shape [n, {PRIOR_SLOTS}], got {tuple(u.shape)}")
    tied = [{} for _ in range(len(u))]
    if split == "train":
        prefix: tuple = ()
        for name, table in zip(_TIED, _tied_tables()):
            mass = table[prefix] if prefix else np.broadcast_to(table, (len(u),) + table.shape)
            a, b = _SLOTS[name]
            prefix = prefix + (_tree_draw(mass, u[:, a:b]),)
        for name, values in zip(_TIED, prefix):
            for d, v in zip(tied, values):
                d[name] = int(v)
    return [FaceParams(**_draw_one(_Uniforms(row), fixed)) for row, fixed in zip(u, tied)]


def _feature_layout():
    layout = []
    for f in dataclasses.fields(FaceParams):
        if f.name in _CATEGORICAL:
            layout.append((f.name, len(values_of(f.name))))
        elif f.name in _NUISANCE_INT:
            layout.append((f.name, _NUISANCE_INT[f.name]))
        else:
            layout.append((f.name, 0))  # a float, as it is
    return tuple(layout)


_FEATURE_LAYOUT = _feature_layout()
PARAM_FEATURES = sum(max(k, 1) for _, k in _FEATURE_LAYOUT)


def params_features(params: Sequence[FaceParams]) -> np.ndarray:
    """Faces -> float32 [n, PARAM_FEATURES]: every field of ``FaceParams`` in order, a categorical
    or integer field one-hot, a float as it is."""
    out = np.zeros((len(params), PARAM_FEATURES), dtype=np.float32)
    for i, p in enumerate(params):
        col = 0
        for name, k in _FEATURE_LAYOUT:
            v = getattr(p, name)
            if k:
                out[i, col + int(v)] = 1.0
                col += k
            else:
                out[i, col] = v
                col += 1
    return out


def sample_params(rng: Union[np.random.Generator, int, None] = None, n: Optional[int] = None,
                  split: Optional[str] = "train", **fixed):
    """Random ``FaceParams`` (one, or a list of ``n``).

    ``fixed`` pins fields (names or indices), e.g. ``sample_params(0, hairstyle="afro")``; the
    free fields are sampled to respect the conflicts (hat only on ``HAT_STYLES``; beard and
    mustache only on male faces, lipstick only on female ones). Pinned values are honoured
    even when they break a conflict rule.

    ``split``: ``"train"`` never yields a held-out combination (pinning one raises);
    ``"heldout"`` yields only samples that contain a held-out combination (one drawn uniformly
    among those compatible with ``fixed``, the rest sampled as usual); ``None`` / ``"all"``
    samples without that filter."""
    if split not in ("train", "heldout", "all", None):
        raise ValueError(f"split must be 'train', 'heldout', 'all' or None, not {split!r}")
    if split == "all":
        split = None
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    fx = {}
    for k, v in fixed.items():
        if k in _CATEGORICAL:
            fx[k] = value_index(k, v)
        elif k in {f.name for f in dataclasses.fields(FaceParams)}:
            fx[k] = v
        else:
            raise KeyError(f"unknown FaceParams field {k!r}")
    if n is None:
        return _sample_one(rng, fx, split)
    return [_sample_one(rng, fx, split) for _ in range(int(n))]


# ---------------------------------------------------------------------------------------------
# drawing

_CIRCLES: Dict[int, np.ndarray] = {}


def _unit_circle(n: int) -> np.ndarray:
    c = _CIRCLES.get(n)
    if c is None:
        t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
        c = _CIRCLES[n] = np.stack([np.cos(t), np.sin(t)], 1)
    return c


def _ell(cx, cy, rx, ry, n=28) -> np.ndarray:
    return _unit_circle(n) * (rx, ry) + (cx, cy)


_ARCS: Dict[tuple, np.ndarray] = {}
_BEZ: Dict[int, np.ndarray] = {}


def _arc(cx, cy, rx, ry, a0, a1, n=12) -> np.ndarray:
    """Points on an ellipse from angle a0 to a1 (degrees, 0 = right, 90 = up)."""
    key = (a0, a1, n)
    cs = _ARCS.get(key)
    if cs is None:
        t = np.radians(np.linspace(a0, a1, n))
        cs = _ARCS[key] = np.stack([np.cos(t), -np.sin(t)], 1)
    return cs * (rx, ry) + (cx, cy)


def _quad(p0, p1, p2, n=8) -> np.ndarray:
    """n points on the quadratic Bezier curve with control points p0, p1, p2."""
    B = _BEZ.get(n)
    if B is None:
        t = np.linspace(0.0, 1.0, n)
        B = _BEZ[n] = np.stack([(1 - t) ** 2, 2 * (1 - t) * t, t ** 2], 1)
    return B @ np.array([p0, p1, p2], dtype=np.float64)


def _ribbon(center: np.ndarray, half_widths) -> np.ndarray:
    """A closed outline around a centre polyline with varying half width."""
    c = np.asarray(center, dtype=np.float64)
    hw = np.asarray(half_widths, dtype=np.float64)
    tang = np.gradient(c, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True) + 1e-9
    nrm = np.stack([-tang[:, 1], tang[:, 0]], 1)
    return np.concatenate([c + nrm * hw[:, None], (c - nrm * hw[:, None])[::-1]])


class _Pen:
    """Draws unit-space shapes (a 64 x 64 frame) onto the supersampled index canvas, through
    the pose transform (rotation and scale about the head, then a shift)."""

    def __init__(self, draw: ImageDraw.ImageDraw, S: float, p: FaceParams, pivot=(32.0, 36.0)):
        self.d = draw
        self.S = S
        theta = math.radians(6.0 * p.roll)
        s = 1.0 + 0.06 * p.scale
        c, sn = math.cos(theta) * s, math.sin(theta) * s
        A = np.array([[c, -sn], [sn, c]])
        piv = np.asarray(pivot)
        t = np.array([2.0 * p.dx, 2.0 * p.dy])
        self.A = (A * S).T
        self.b = (piv + t - A @ piv) * S
        self.wscale = S * s

    def _xy(self, pts):
        return (np.asarray(pts, dtype=np.float64) @ self.A + self.b).ravel().tolist()

    def poly(self, pts, idx):
        self.d.polygon(self._xy(pts), fill=idx)

    def ell(self, cx, cy, rx, ry, idx, n=28):
        self.d.polygon(self._xy(_ell(cx, cy, rx, ry, n)), fill=idx)

    def line(self, pts, idx, w):
        wpx = max(1, int(round(w * self.wscale)))
        self.d.line(self._xy(pts), fill=idx, width=wpx, joint="curve" if len(pts) > 2 else None)

    def closed_line(self, pts, idx, w):
        pts = np.asarray(pts)
        self.line(np.concatenate([pts, pts[:2]]), idx, w)


def _mix(a, b, t):
    return np.asarray(a, dtype=np.float64) * (1 - t) + np.asarray(b, dtype=np.float64) * t


def _interp(stops: np.ndarray, t: float) -> np.ndarray:
    x = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    return _mix(stops[i], stops[i + 1], x - i)


def _lum(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _palette(p: FaceParams) -> bytes:
    pal = np.zeros((256, 3), dtype=np.float64)
    bg = np.asarray(BACKGROUNDS[p.background][1], dtype=np.float64)
    pal[BG] = bg
    skin = _interp(SKIN_STOPS, p.skin_tone)
    pal[SKIN] = skin
    pal[SKIN_SHADE] = skin * 0.80
    pal[SKIN_LIGHT] = skin + (255 - skin) * 0.22
    pal[EAR_SHADE] = skin * 0.82
    pal[WRINKLE] = skin * 0.56
    pal[NOSTRIL] = skin * 0.50
    pal[NECK_SHADE] = skin * 0.80
    pal[EYE_WHITE] = (246, 246, 244)
    pal[IRIS_I] = IRIS[p.eye_color]
    pal[PUPIL] = (12, 12, 16)
    pal[EYE_LINE] = np.minimum((40, 30, 30), skin * 0.4)
    brow = np.minimum(_interp(BROW_STOPS, p.brow_tone), skin * 0.48)
    pal[BROW] = brow
    pal[FACIAL_HAIR] = brow
    if p.lipstick:
        pal[LIP] = (200, 22, 56)
    elif p.gender == 0:
        pal[LIP] = _mix(skin, (206, 96, 110), 0.45)
    else:
        pal[LIP] = _mix(skin, (160, 84, 76), 0.32)
    pal[MOUTH_IN] = (96, 24, 34)
    pal[TEETH] = (246, 244, 238)
    glasses = GLASSES_LIGHT if _lum(skin) < 125 else GLASSES_DARK
    pal[GLASSES] = glasses[p.glasses_color]
    pal[EARRING], pal[EARRING_RIM] = EARRINGS[p.earring_color]
    hat = np.asarray(HAT_COLORS[p.hat_color][1], dtype=np.float64)
    pal[HAT] = hat
    pal[HAT_BAND] = hat * 0.5 if _lum(hat) > 110 else hat + (255 - hat) * 0.5
    cl = np.asarray(CLOTHES[p.clothes][1], dtype=np.float64)
    pal[CLOTHES_I] = cl
    pal[CLOTHES_SHADE] = cl * 0.62 if _lum(cl) > 90 else cl + (255 - cl) * 0.35
    hair = np.asarray(HAIR_COLOR_RGB[HAIR_COLORS[p.hair_color]], dtype=np.float64)
    hair = hair * (1.0 + 0.07 * p.hair_tint)
    pal[HAIR] = hair
    pal[HAIR_SHADE] = hair * 0.74
    pal[HAIR_LIGHT] = hair + (255 - hair) * 0.30
    return np.clip(np.rint(pal), 0, 255).astype(np.uint8).tobytes()


class _Geo:
    """Face geometry in the 64 x 64 unit frame, from the identity and gender."""

    def __init__(self, p: FaceParams):
        male = p.gender == 1
        self.male = male
        self.cx = 32.0
        self.cy = cy = 29.0
        self.rx = rx = 11.4 + 1.5 * p.face_width + (0.9 if male else 0.0)
        self.ry_top = 14.0 + 0.6 * p.face_length
        self.ry_bot = 14.8 + 2.0 * p.face_length + (0.5 if male else 0.0)
        self.e = (0.50 + 0.16 * p.jaw) if male else (0.98 + 0.22 * p.jaw)
        self.taper = (0.04 + 0.08 * p.chin) if male else (0.20 + 0.14 * p.chin)
        self.top = cy - self.ry_top
        self.chin_y = cy + self.ry_bot
        self.eye_y = ey0 = cy + 1.2 + 1.6 * (p.eye_height - 0.5)
        self.eye_dx = 4.9 + 1.1 * p.eye_spacing
        self.ex = 2.75 + 0.5 * p.eye_size
        self.ey = 1.9 + 0.35 * p.eye_size
        self.brow_y = ey0 - self.ey - 1.6 - 0.9 * p.brow_height
        self.hair_y = self.brow_y - 5.0          # hairline
        self.nose_y = ey0 + 5.0 + 1.2 * p.nose_length
        self.nose_w = 1.7 + 0.8 * p.nose_width + (0.3 if male else 0.0)
        self.mouth_y = self.nose_y + 3.3
        self.mw = 6.0 + 1.8 * p.mouth_width + (0.6 if male else 0.0)
        self.lip_h = 0.85 + 0.55 * p.lip_fullness + (0.0 if male else 0.25)
        self.ear_rx = 1.9 + 0.5 * p.ear_size
        self.ear_ry = 3.1 + 0.6 * p.ear_size
        self.ear_y = ey0 + 1.3
        self.ear_dx = rx + 0.2
        self.neck_w = rx * (0.46 + 0.08 * p.neck_width + (0.07 if male else 0.0))

    def half_width(self, y: float) -> float:
        """Half width of the cranium (upper half) at height y."""
        v = (y - self.cy) / self.ry_top
        return self.rx * math.sqrt(max(0.0, 1.0 - v * v))

    def outline(self, t0=0.0, t1=360.0, n=64, grow=0.0) -> np.ndarray:
        """The face outline; angles in degrees, image convention (0 = right, 90 = down)."""
        t = np.radians(np.linspace(t0, t1, n, endpoint=(t1 - t0) < 360.0))
        c, s = np.cos(t), np.sin(t)
        rx = self.rx + grow
        x = np.empty_like(t)
        y = np.empty_like(t)
        up = s < 0
        x[up] = rx * c[up]
        y[up] = (self.ry_top + grow) * s[up]
        lo = ~up
        cl, sl = c[lo], s[lo]
        x[lo] = rx * np.sign(cl) * np.abs(cl) ** self.e * (1.0 - self.taper * sl ** 2)
        y[lo] = (self.ry_bot + grow) * sl ** self.e
        return np.stack([x + self.cx, y + self.cy], 1)


# ---- layers ---------------------------------------------------------------------------------

def _clothes(pen: _Pen, g: _Geo):
    cx = g.cx
    pen.ell(cx, g.chin_y + 19.5, 25.0 + (2.0 if g.male else 0.0), 13.5, CLOTHES_I, n=40)
    base = g.chin_y + 6.2
    if g.male:
        w = g.neck_w + 1.6
        pen.line([(cx - w, base - 0.3), (cx, base + 4.2), (cx + w, base - 0.3)], CLOTHES_SHADE, 1.0)
    else:
        pen.ell(cx, base + 0.6, g.neck_w + 2.6, 3.4, SKIN, n=28)


def _neck(pen: _Pen, g: _Geo, p: FaceParams):
    cx, w = g.cx, g.neck_w
    pen.poly([(cx - w, g.cy + 6), (cx + w, g.cy + 6), (cx + w * 1.04, g.chin_y + 7.5),
              (cx - w * 1.04, g.chin_y + 7.5)], SKIN)
    pen.ell(cx, g.chin_y - 0.4, w * 0.98, 2.6, NECK_SHADE, n=24)
    if p.age == 1:
        for dy, k in ((3.4, 0.72), (5.2, 0.6)):
            y = g.chin_y + dy
            pen.line(_quad((cx - w * k, y - 0.5), (cx, y + 0.7), (cx + w * k, y - 0.5), 6),
                     WRINKLE, 0.55)


def _ears(pen: _Pen, g: _Geo):
    for s in (-1.0, 1.0):
        x = g.cx + s * g.ear_dx
        pen.ell(x, g.ear_y, g.ear_rx, g.ear_ry, SKIN, n=20)
        pen.ell(x + s * 0.35, g.ear_y, g.ear_rx * 0.5, g.ear_ry * 0.62, EAR_SHADE, n=16)


def _face(pen: _Pen, g: _Geo):
    pen.poly(g.outline(), SKIN)
    # scalp sheen: always drawn (hair covers it), visible on bald and shaved heads
    pen.ell(g.cx - 3.0, g.top + 4.0, 4.6, 2.0, SKIN_LIGHT, n=20)


def _wrinkles(pen: _Pen, g: _Geo):
    cx = g.cx
    for k, dy in ((1.0, 2.1), (0.8, 3.7)):
        y = g.brow_y - dy
        pen.line(_quad((cx - 5.2 * k, y + 0.3), (cx, y - 0.6), (cx + 5.2 * k, y + 0.3), 7),
                 WRINKLE, 0.55)
    for s in (-1.0, 1.0):
        ex = cx + s * g.eye_dx
        # under-eye bags
        yb = g.eye_y + g.ey + 0.9
        bag = _quad((ex - g.ex * 0.85, yb - 0.3), (ex, yb + 1.1), (ex + g.ex * 0.85, yb - 0.3), 6)
        pen.line(bag, WRINKLE, 0.55)
        # crow's feet
        ox = ex + s * (g.ex + 0.7)
        pen.line([(ox, g.eye_y - 0.2), (ox + s * 1.8, g.eye_y - 1.1)], WRINKLE, 0.5)
        pen.line([(ox, g.eye_y + 0.4), (ox + s * 1.9, g.eye_y + 1.2)], WRINKLE, 0.5)
        # nasolabial folds
        a = (cx + s * (g.nose_w + 1.1), g.nose_y - 1.3)
        b = (cx + s * (g.mw / 2 + 1.5), g.mouth_y + 1.8)
        m = (cx + s * (g.mw / 2 + 2.3), g.nose_y + 1.2)
        pen.line(_quad(a, m, b, 7), WRINKLE, 0.6)


def _eyes(pen: _Pen, g: _Geo):
    for s in (-1.0, 1.0):
        x, y = g.cx + s * g.eye_dx, g.eye_y
        pen.ell(x, y, g.ex, g.ey, EYE_WHITE, n=24)
        r = g.ey * 0.98
        pen.ell(x, y + 0.05, r, r, IRIS_I, n=20)
        pen.ell(x, y + 0.05, r * 0.45, r * 0.45, PUPIL, n=12)
        lid = _arc(x, y + 0.15, g.ex + 0.15, g.ey + 0.2, 172, 8, 9)
        pen.line(lid, EYE_LINE, 0.6 if g.male else 0.8)
        if not g.male:
            ox = x + s * (g.ex + 0.1)
            pen.line([(ox - s * 0.4, y - 0.5), (ox + s * 1.2, y - 1.7)], EYE_LINE, 0.6)
            pen.line([(ox - s * 1.4, y - g.ey), (ox - s * 0.6, y - g.ey - 1.3)], EYE_LINE, 0.5)


def _brows(pen: _Pen, g: _Geo):
    for s in (-1.0, 1.0):
        x0 = g.cx + s * (g.eye_dx - g.ex - 0.2)
        x1 = g.cx + s * (g.eye_dx + g.ex + 0.5)
        y = g.brow_y
        if g.male:
            pts = _quad((x0, y + 0.2), ((x0 + x1) / 2, y - 0.5), (x1, y + 0.4), 6)
            pen.line(pts, BROW, 1.25)
        else:
            pts = _quad((x0, y + 0.3), ((x0 + x1) / 2 + s * 0.8, y - 1.6), (x1, y + 0.6), 7)
            pen.line(pts, BROW, 0.7)


def _nose(pen: _Pen, g: _Geo):
    cx, y, w = g.cx, g.nose_y, g.nose_w
    pen.line(_quad((cx - 0.9, g.eye_y + 0.8), (cx - 1.6, y - 2.6), (cx - w * 0.9, y - 0.9), 6),
             SKIN_SHADE, 0.5)
    pen.line(_quad((cx - w, y - 0.7), (cx, y + 0.9), (cx + w, y - 0.7), 7), SKIN_SHADE, 0.55)
    for s in (-1.0, 1.0):
        pen.ell(cx + s * w * 0.42, y - 0.25, 0.55, 0.38, NOSTRIL, n=10)


def _beard(pen: _Pen, g: _Geo):
    outer = g.outline(10, 170, 24, grow=0.6)
    cx, my = g.cx, g.mouth_y
    s = g.mw / 2
    inner = np.concatenate([
        _quad((cx - g.rx * 0.84, g.eye_y + 3.0), (cx - s - 2.4, my - 2.2),
              (cx - s - 1.3, my + 0.8), 5),
        _quad((cx - s - 1.1, my + 1.4), (cx, my + 4.4), (cx + s + 1.1, my + 1.4), 7),
        _quad((cx + s + 1.3, my + 0.8), (cx + s + 2.4, my - 2.2),
              (cx + g.rx * 0.84, g.eye_y + 3.0), 5),
    ])
    pen.poly(np.concatenate([outer, inner]), FACIAL_HAIR)


def _mouth(pen: _Pen, g: _Geo, p: FaceParams):
    cx, y, hw = g.cx, g.mouth_y, g.mw / 2
    if p.smiling:
        w = hw * 1.12
        h = 2.7 + 0.4 * g.lip_h
        top = _quad((cx - w, y - 1.1), (cx, y + 0.1), (cx + w, y - 1.1), 9)
        bot = _arc(cx, y - 0.4, w * 0.98, h, -5, -175, 14)
        shape = np.concatenate([top, bot])
        pen.poly(shape, MOUTH_IN)
        teeth_bot = _quad((cx + w * 0.9, y - 0.6), (cx, y + 1.2), (cx - w * 0.9, y - 0.6), 8)
        pen.poly(np.concatenate([top[1:-1], teeth_bot]), TEETH)
        pen.closed_line(shape, LIP, 0.9 if p.lipstick else 0.6)
    else:
        lh = g.lip_h
        upper = np.concatenate([
            _quad((cx - hw, y), (cx - hw * 0.5, y - lh * 1.1), (cx - 0.5, y - lh * 0.8), 5),
            _quad((cx + 0.5, y - lh * 0.8), (cx + hw * 0.5, y - lh * 1.1), (cx + hw, y), 5),
            _quad((cx + hw, y), (cx, y + 0.25), (cx - hw, y), 5),
        ])
        lower = np.concatenate([_quad((cx - hw, y), (cx, y + lh * 2.3), (cx + hw, y), 9),
                                _quad((cx + hw, y), (cx, y + 0.2), (cx - hw, y), 4)])
        pen.poly(upper, LIP)
        pen.poly(lower, LIP)
        pen.line(_quad((cx - hw - 0.2, y + 0.05), (cx, y + 0.35), (cx + hw + 0.2, y + 0.05), 7),
                 MOUTH_IN, 0.5)


def _mustache(pen: _Pen, g: _Geo):
    cx, y, hw = g.cx, g.mouth_y, g.mw / 2 + 1.1
    top = _quad((cx - hw - 0.4, y + 0.3), (cx, y - 4.6), (cx + hw + 0.4, y + 0.3), 9)
    bot = _quad((cx + hw, y + 0.5), (cx, y - 1.6), (cx - hw, y + 0.5), 9)
    pen.poly(np.concatenate([top, bot]), FACIAL_HAIR)


def _glasses(pen: _Pen, g: _Geo):
    gx, gy = g.ex + 1.5, g.ey + 1.45
    y = g.eye_y - 0.1
    c = _unit_circle(24)
    sq = np.sign(c) * np.abs(c) ** 0.55
    for s in (-1.0, 1.0):
        x = g.cx + s * g.eye_dx
        pen.closed_line(sq * (gx, gy) + (x, y), GLASSES, 0.85)
        pen.line([(x + s * gx, y - 0.7), (g.cx + s * (g.rx + 0.2), y - 0.2)], GLASSES, 0.8)
    xi = g.eye_dx - gx
    pen.line(_quad((g.cx - xi, y - 0.5), (g.cx, y - 1.4), (g.cx + xi, y - 0.5), 5), GLASSES, 0.8)


def _earrings(pen: _Pen, g: _Geo):
    for s in (-1.0, 1.0):
        x = g.cx + s * (g.ear_dx + 0.3)
        y = g.ear_y + g.ear_ry + 1.2
        pen.ell(x, y, 1.75, 1.75, EARRING_RIM, n=16)
        pen.ell(x, y, 1.1, 1.1, EARRING, n=12)


def _hat(pen: _Pen, g: _Geo):
    cx, yb = g.cx, g.hair_y + 0.2
    w0, w1, top = g.rx + 2.2, g.rx - 1.2, g.top - 6.0
    crown = np.concatenate([
        [(cx - w0, yb)],
        _quad((cx - w1 - 0.3, top + 3.0), (cx - w1, top), (cx - w1 + 3.0, top), 5),
        _quad((cx + w1 - 3.0, top), (cx + w1, top), (cx + w1 + 0.3, top + 3.0), 5),
        [(cx + w0, yb)],
    ])
    pen.poly(crown, HAT)
    pen.poly([(cx - w0 - 0.15, yb - 0.4), (cx - w0 + 0.35, yb - 3.0), (cx + w0 - 0.35, yb - 3.0),
              (cx + w0 + 0.15, yb - 0.4)], HAT_BAND)
    pen.ell(cx, yb, g.rx + 7.0, 1.9, HAT, n=32)


# ---- hair -----------------------------------------------------------------------------------

def _shell(g: _Geo, grow_x, grow_y, a0, a1, n=18, cy_shift=0.0):
    return _arc(g.cx, g.cy + cy_shift, g.rx + grow_x, g.ry_top + grow_y, a0, a1, n)


def _hairline_side_part(g: _Geo, side: float, y_low: float):
    """Hairline of a side-parted cap, from the right temple back to the left one; the part is
    on ``side`` (+1 right, -1 left) and the fringe sweeps down to ``y_low`` on the other side."""
    cx, yh = g.cx, g.hair_y
    pts = [(cx + g.rx - 0.1, g.cy + 0.8), (cx + g.half_width(yh + 2.0) - 0.8, yh + 2.0),
           (cx + 4.6, yh - 0.9), (cx + 1.0, yh + 0.6), (cx - 3.5, y_low - 0.4),
           (cx - g.half_width(y_low) + 0.6, y_low), (cx - g.rx + 0.1, g.cy + 0.8)]
    if side < 0:
        pts = [(2 * cx - x, y) for x, y in pts][::-1]
    return pts


def _part_strands(pen: _Pen, g: _Geo, side: float, n: int):
    """Strands combed from the parting line over to the other side (they never cross)."""
    cx, yh = g.cx, g.hair_y
    front = np.array([cx + side * 4.6, yh - 0.9])
    back = np.array([cx + side * 3.2, g.top - 1.0])
    for f in np.linspace(0.3, 0.85, n):
        a = front + (back - front) * f
        ye = yh + 3.0 - 4.0 * f
        e = (cx - side * (g.half_width(ye) - 1.2), ye)
        m = (cx - side * 1.5, a[1] - 0.8)
        pen.line(_quad(a, m, e, 7), HAIR_SHADE, 0.45)


def _cap(g: _Geo, gx, gy, inner, a0=186, a1=-6):
    return np.concatenate([_shell(g, gx, gy, a0, a1), np.asarray(inner, dtype=np.float64)])


def _sleek_cap(pen: _Pen, g: _Geo):
    cx, yh = g.cx, g.hair_y
    inner = np.concatenate([
        [(cx + g.rx - 0.05, g.cy + 0.6)],
        _quad((cx + g.half_width(yh + 1.0) - 0.7, yh + 1.0), (cx, yh - 1.6),
              (cx - g.half_width(yh + 1.0) + 0.7, yh + 1.0), 9),
        [(cx - g.rx + 0.05, g.cy + 0.6)],
    ])
    pen.poly(_cap(g, 0.9, 1.3, inner), HAIR)
    for k in (-1.0, 0.0, 1.0):     # combed-back strands toward the crown
        strand = _quad((cx + k * 5.5, yh + 0.2), (cx + k * 4.0, g.top + 0.5),
                       (cx + k * 1.5, g.top - 0.6), 6)
        pen.line(strand, HAIR_SHADE, 0.45)


def _long_back(pen: _Pen, g: _Geo, v: float, length: float):
    cx = g.cx
    gx = 2.4 + 0.8 * v
    L = g.cy + length + 2.0 * v
    pts = np.concatenate([
        _shell(g, gx, 2.6 + v, 180, 0, 18),
        [(cx + g.rx + gx + 0.6, g.cy + 12.0), (cx + g.rx + gx + 1.0, L - 1.5)],
        _quad((cx + g.rx + gx + 0.6, L), (cx, L + 1.5), (cx - g.rx - gx - 0.6, L), 7),
        [(cx - g.rx - gx - 1.0, L - 1.5), (cx - g.rx - gx - 0.6, g.cy + 12.0)],
    ])
    pen.poly(pts, HAIR)
    for s in (-1.0, 1.0):
        x = cx + s * (g.rx + gx * 0.55)
        pen.line(_quad((x, g.cy + 3.0), (x + s * 0.9, g.cy + 12), (x + s * 0.9, L - 1.0), 6),
                 HAIR_SHADE, 0.5)


def _scallops(pen: _Pen, center, rx, ry, r, n, idx, a0=0.0, a1=360.0):
    cx, cy = center
    ts = np.radians(np.linspace(a0, a1, n, endpoint=(a1 - a0) < 360))
    for t in ts:
        pen.ell(cx + rx * math.cos(t), cy - ry * math.sin(t), r, r, idx, n=14)


def _curl(pen: _Pen, x, y, r=1.1, a0=30.0):
    pen.line(_arc(x, y, r, r, a0, a0 + 230, 6), HAIR_SHADE, 0.45)


def _hair_back(pen: _Pen, g: _Geo, p: FaceParams, style: str):
    v, side = p.hair_volume, (1.0 if p.hair_side else -1.0)
    cx, cy = g.cx, g.cy
    if style == "long straight":
        _long_back(pen, g, v, 25.0)
    elif style == "bangs":
        _long_back(pen, g, v, 23.5)
    elif style == "bob cut":
        gx = 2.8 + 0.8 * v
        B = cy + 13.5
        pts = np.concatenate([
            _shell(g, gx, 3.0 + v, 180, 0, 18),
            [(cx + g.rx + gx + 0.5, B), (cx + g.rx - 1.0, B + 0.6), (cx - g.rx + 1.0, B + 0.6),
             (cx - g.rx - gx - 0.5, B)],
        ])
        pen.poly(pts, HAIR)
        for s in (-1.0, 1.0):
            x = cx + s * (g.rx + gx * 0.5)
            pen.line([(x, cy + 2.0), (x + s * 0.4, B - 0.6)], HAIR_SHADE, 0.5)
    elif style == "curly":
        rx, ry = g.rx + 4.2 + 0.8 * v, g.ry_top + 4.2 + 0.8 * v
        c = (cx, cy - 1.0)
        pen.ell(c[0], c[1] + 1.5, rx, ry + 1.5, HAIR, n=36)
        _scallops(pen, (c[0], c[1] + 1.5), rx, ry + 1.5, 2.7, 18, HAIR)
        for s in (-1.0, 1.0):
            for yy in (cy - 3.0, cy + 4.0, cy + 11.0):
                _curl(pen, cx + s * (g.rx + 3.4), yy, 1.1, 40 if s > 0 else 220)
    elif style == "afro":
        rx, ry = g.rx + 9.0 + 1.5 * v, g.ry_top + 6.8 + 1.5 * v
        c = (cx, cy - 5.2)
        pen.ell(c[0], c[1], rx, ry, HAIR, n=44)
        _scallops(pen, c, rx, ry, 2.6, 22, HAIR)
        for k, (ax, ay) in enumerate([(-0.75, 0.35), (0.75, 0.35), (-0.82, -0.2), (0.82, -0.2),
                                      (-0.45, 0.75), (0.45, 0.75), (0.0, 0.86), (-0.86, -0.55),
                                      (0.86, -0.55)]):
            _curl(pen, c[0] + ax * rx * 0.92, c[1] - ay * ry * 0.9, 1.2, 40 + 70 * k)
    elif style == "ponytail":
        base = (cx + side * (g.rx - 2.5), g.top + 3.2)
        center = np.concatenate([
            _quad(base, (cx + side * (g.rx + 5.5), g.top + 4.0),
                  (cx + side * (g.rx + 6.3), cy + 2.0), 8),
            _quad((cx + side * (g.rx + 6.3), cy + 2.6), (cx + side * (g.rx + 6.6), cy + 10),
                  (cx + side * (g.rx + 4.4), cy + 16.5 + 3.0 * v), 7),
        ])
        hw = np.concatenate([np.linspace(3.2, 2.9, 8), np.linspace(2.8, 0.5, 7)])
        pen.poly(_ribbon(center, hw), HAIR)
        pen.line(center[5:13], HAIR_SHADE, 0.5)
        pen.ell(cx + side * (g.rx + 1.4), g.top + 3.3, 1.3, 2.0, HAIR_SHADE, n=12)


def _hair_front(pen: _Pen, g: _Geo, p: FaceParams, style: str):
    v, side = p.hair_volume, (1.0 if p.hair_side else -1.0)
    cx, cy, yh = g.cx, g.cy, g.hair_y
    if style == "short":
        inner = _hairline_side_part(g, side, yh + 3.4)
        pen.poly(_cap(g, 1.6 + 0.5 * v, 3.8 + 1.4 * v, inner), HAIR)
        _part_strands(pen, g, side, 3)
        pen.line(_arc(cx, cy, g.rx - 1.0, g.ry_top + 1.6, 130, 95, 5), HAIR_LIGHT, 0.6)
    elif style == "buzz cut":
        inner = np.concatenate([
            [(cx + g.rx - 0.05, cy + 0.2), (cx + g.rx - 0.7, cy - 4.0)],
            _quad((cx + g.half_width(yh) - 1.0, yh + 0.4), (cx, yh - 1.2),
                  (cx - g.half_width(yh) + 1.0, yh + 0.4), 9),
            [(cx - g.rx + 0.7, cy - 4.0), (cx - g.rx + 0.05, cy + 0.2)],
        ])
        pen.poly(_cap(g, 0.45, 0.65, inner), HAIR)
    elif style in ("long straight", "bangs"):
        if style == "long straight":
            inner = np.concatenate([
                [(cx + g.rx - 0.1, cy + 0.5)],
                _quad((cx + g.half_width(yh + 1.5) - 0.5, yh + 1.5), (cx + 1.8, yh + 0.2),
                      (cx + 0.3, yh - 1.5), 6),
                _quad((cx - 0.3, yh - 1.5), (cx - 1.8, yh + 0.2),
                      (cx - g.half_width(yh + 1.5) + 0.5, yh + 1.5), 6),
                [(cx - g.rx + 0.1, cy + 0.5)],
            ])
            pen.poly(_cap(g, 2.4 + 0.8 * v, 2.6 + v, inner), HAIR)
            for s in (-1.0, 1.0):
                pen.line(_quad((cx + s * 0.6, g.top - 1.0), (cx + s * 5.5, g.top + 0.5),
                               (cx + s * (g.rx - 0.5), yh + 3.0), 7), HAIR_SHADE, 0.45)
        else:
            yf = g.brow_y - 0.8
            inner = np.concatenate([
                [(cx + g.rx - 0.1, cy + 0.5), (cx + g.half_width(yf) - 0.1, yf)],
                _quad((cx + 5.0, yf + 0.4), (cx, yf + 0.9), (cx - 5.0, yf + 0.4), 7),
                [(cx - g.half_width(yf) + 0.1, yf), (cx - g.rx + 0.1, cy + 0.5)],
            ])
            pen.poly(_cap(g, 2.4 + 0.8 * v, 2.6 + v, inner), HAIR)
            for x in (-6.0, -2.0, 2.0, 6.0):
                pen.line([(cx + x * 0.9, yf - 4.0), (cx + x, yf + 0.2)], HAIR_SHADE, 0.45)
        pen.line(_arc(cx, cy, g.rx, g.ry_top + 1.6, 125, 100, 5), HAIR_LIGHT, 0.6)
    elif style == "curly":
        inner = np.concatenate([
            [(cx + g.rx - 0.1, cy)],
            _quad((cx + g.half_width(yh + 1.0), yh + 1.0), (cx, yh - 0.4),
                  (cx - g.half_width(yh + 1.0), yh + 1.0), 9),
            [(cx - g.rx + 0.1, cy)],
        ])
        pen.poly(_cap(g, 2.5, 3.0, inner), HAIR)
        for x in (-7.5, -3.8, 0.0, 3.8, 7.5):
            pen.ell(cx + x, yh + 1.2 - 0.02 * x * x, 2.0, 1.9, HAIR, n=14)
        for x, y in ((-5.0, g.top + 1.0), (0.5, g.top - 0.5), (5.5, g.top + 1.5)):
            _curl(pen, cx + x, y, 1.1, 60)
    elif style == "afro":
        inner = np.concatenate([
            [(cx + g.rx - 0.1, cy - 0.5)],
            _quad((cx + g.half_width(yh + 1.0) - 0.5, yh + 1.0), (cx, yh - 1.2),
                  (cx - g.half_width(yh + 1.0) + 0.5, yh + 1.0), 9),
            [(cx - g.rx + 0.1, cy - 0.5)],
        ])
        pen.poly(_cap(g, 2.0, 2.5, inner), HAIR)
    elif style == "bob cut":
        inner = _hairline_side_part(g, side, yh + 2.4)
        pen.poly(_cap(g, 2.8 + 0.8 * v, 3.0 + v, inner), HAIR)
        _part_strands(pen, g, side, 2)
        pen.line(_arc(cx, cy, g.rx + 0.5, g.ry_top + 1.9, 60, 85, 5), HAIR_LIGHT, 0.6)
    elif style == "bowl cut":
        yf = g.brow_y - 0.9
        ys = cy + 2.2
        outer = _shell(g, 2.7 + 0.6 * v, 3.3 + 0.8 * v, 188, -8, 20)
        outer[0, 1] = outer[-1, 1] = ys
        inner = [(cx + g.rx - 0.2, ys), (cx + g.half_width(yf) - 0.2, yf),
                 (cx - g.half_width(yf) + 0.2, yf), (cx - g.rx + 0.2, ys)]
        pen.poly(np.concatenate([outer, inner]), HAIR)
        for x in (-8.0, -4.0, 0.0, 4.0, 8.0):
            pen.line([(cx + x * 0.8, yf - 5.0), (cx + x, yf + 0.1)], HAIR_SHADE, 0.45)
        pen.line(_arc(cx, cy, g.rx + 0.8, g.ry_top + 2.0, 135, 100, 5), HAIR_LIGHT, 0.7)
    elif style == "mohawk":
        T = g.top
        h = 1.0 + 0.25 * v
        fin = [(cx - 2.6, yh + 0.8), (cx - 3.1, T + 1.2), (cx - 5.4, T - 5.2 * h),
               (cx - 2.0, T - 3.2 * h), (cx, T - 9.0 * h), (cx + 2.0, T - 3.2 * h),
               (cx + 5.4, T - 5.2 * h), (cx + 3.1, T + 1.2), (cx + 2.6, yh + 0.8), (cx, yh + 1.4)]
        pen.poly(fin, HAIR)
        pen.line([(cx, yh + 0.4), (cx, T - 6.0 * h)], HAIR_SHADE, 0.5)
    elif style == "ponytail":
        _sleek_cap(pen, g)
    elif style == "bun":
        _sleek_cap(pen, g)
        r = 4.3 + 0.6 * v
        by = g.top - 2.6 - 0.6 * v
        pen.ell(cx, by, r, r * 0.95, HAIR, n=24)
        pen.line(_arc(cx, by + 0.4, r * 0.6, r * 0.55, 200, 340, 6), HAIR_SHADE, 0.5)
        pen.line(_arc(cx, by, r * 0.7, r * 0.65, 120, 70, 4), HAIR_LIGHT, 0.6)
    # bald: nothing


# ---------------------------------------------------------------------------------------------
# the renderer

def render(params: FaceParams, size: int = 64, supersample: int = 4) -> RenderResult:
    """Draw one face. Deterministic: same params, size and supersample -> same bytes."""
    p = params
    ss = int(supersample)
    W = int(size) * ss
    S = W / 64.0
    canvas = Image.new("P", (W, W), BG)
    pen = _Pen(ImageDraw.Draw(canvas), S, p)
    g = _Geo(p)
    style = HAIRSTYLES[p.hairstyle]

    _clothes(pen, g)
    _hair_back(pen, g, p, style)
    _neck(pen, g, p)
    _ears(pen, g)
    _face(pen, g)
    if p.age == 1:
        _wrinkles(pen, g)
    _eyes(pen, g)
    _brows(pen, g)
    _nose(pen, g)
    if p.beard:
        _beard(pen, g)
    _mouth(pen, g, p)
    if p.mustache:
        _mustache(pen, g)
    _hair_front(pen, g, p, style)
    if p.hat:
        _hat(pen, g)
    if p.eyeglasses:
        _glasses(pen, g)
    if p.earrings:
        _earrings(pen, g)

    idx = np.asarray(canvas)
    parts = _PART_LUT[idx[ss // 2::ss, ss // 2::ss]]
    canvas.putpalette(_palette(p))
    rgb = canvas.convert("RGB")
    canvas.putpalette(_CLASS_PAL_BYTES)
    cls = canvas.convert("RGB")
    if ss > 1:
        rgb = rgb.reduce(ss)
        cls = cls.reduce(ss)
    img = np.array(rgb)
    c = np.asarray(cls)
    hair = c[..., 0] > 0
    face = ~hair & (c[..., 2] >= 128)
    bgm = ~hair & ~face
    if p.bg_gradient != 0.0:
        # a soft vertical gradient, applied through the background coverage of each pixel
        H = img.shape[0]
        base = np.asarray(BACKGROUNDS[p.background][1], dtype=np.float32)
        ramp = (0.5 - (np.arange(H, dtype=np.float32) + 0.5) / H) * (0.24 * p.bg_gradient)
        delta = ramp[:, None, None] * base[None, None, :]          # [H, 1, 3]
        cov = c[..., 1:2].astype(np.float32) / 255.0                # [H, W, 1]
        img = np.clip(np.rint(img.astype(np.float32) + cov * delta), 0, 255).astype(np.uint8)
    masks = {"hair": hair, "face": face, "background": bgm}
    return RenderResult(image=img, masks=masks, labels=p.labels(), parts=parts)


def render_batch(params_list: Sequence[FaceParams], size: int = 64, supersample: int = 4):
    """Render many: (images uint8 [N, H, W, 3], masks {name: bool [N, H, W]},
    labels {name: int64 [N]})."""
    results = [render(p, size=size, supersample=supersample) for p in params_list]
    if not results:
        raise ValueError("render_batch needs at least one FaceParams")
    images = np.stack([r.image for r in results])
    masks = {k: np.stack([r.masks[k] for r in results]) for k in results[0].masks}
    labels = {k: np.array([r.labels[k] for r in results], dtype=np.int64) for k in LABEL_NAMES}
    return images, masks, labels


def to_tensor(images: np.ndarray):
    """uint8 [N, H, W, 3] (or [H, W, 3]) -> torch float32 [N, 3, H, W] in [-1, 1]."""
    import torch
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()
    return t.div_(127.5).sub_(1.0)


def from_tensor(x) -> np.ndarray:
    """torch [N, 3, H, W] (or [3, H, W]) in [-1, 1] -> uint8 [N, H, W, 3]."""
    t = x.detach().float().cpu()
    if t.dim() == 3:
        t = t[None]
    t = ((t.clamp(-1, 1) + 1.0) * 127.5).round().to(dtype=__import__("torch").uint8)
    return t.permute(0, 2, 3, 1).contiguous().numpy()


_SHORT = {"eyeglasses": "glasses", "hat": "hat", "earrings": "earrings", "lipstick": "lipstick",
          "smiling": "smile", "beard": "beard", "mustache": "mustache"}


def _label_text(p: FaceParams) -> Sequence[str]:
    lab = p.label_names()
    style = lab["hairstyle"]
    line1 = style if style == "bald" else f"{lab['hair_color']} {style}"
    words = [lab["gender"][0].upper(), lab["age"], f"{lab['eye_color']} eyes"]
    line2 = " ".join(words)
    line3 = " ".join(v for k, v in _SHORT.items() if lab[k] == "yes")
    return line1, line2, line3


def contact_sheet(params_list: Sequence[FaceParams], nrow: int = 8, upscale: int = 4,
                  label: bool = True, row_titles: Optional[Sequence[str]] = None,
                  size: int = 64) -> Image.Image:
    """Renders in a grid (nearest-neighbour ``upscale``), each optionally labelled with its
    hair and attributes, rows optionally titled; for people to check the renderer."""
    from PIL import ImageFont
    imgs = np.stack([render(p, size=size).image for p in params_list])
    imgs = imgs.repeat(upscale, axis=1).repeat(upscale, axis=2)
    n, h, w, _ = imgs.shape
    try:
        font = ImageFont.load_default(size=max(10, 3 * upscale + 2))
    except TypeError:                      # Pillow < 10.1
        font = ImageFont.load_default()
    lh = (max(10, 3 * upscale + 2) + 3) if label else 0
    th = 3 * lh + 4 if label else 0
    left = 0 if row_titles is None else 9 * max(10, 3 * upscale + 2)
    pad = 4
    ncol = int(nrow)
    nr = (n + ncol - 1) // ncol
    sheet = Image.new("RGB", (left + ncol * (w + pad) + pad, nr * (h + th + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, p in enumerate(params_list):
        r, c = divmod(i, ncol)
        x, y = left + pad + c * (w + pad), pad + r * (h + th + pad)
        sheet.paste(Image.fromarray(imgs[i]), (x, y))
        if label:
            for k, line in enumerate(_label_text(p)):
                draw.text((x + 2, y + h + 2 + k * lh), line, fill=(0, 0, 0), font=font)
    if row_titles is not None:
        for r, t in enumerate(row_titles):
            draw.text((pad, pad + r * (h + th + pad) + h // 2 - 6), t, fill=(0, 0, 0), font=font)
    return sheet


def write_renders(folder, n: int, seed: int = 0, split: str = "train", size: int = 64) -> list:
    """Render ``n`` faces into ``folder`` as PNG files (``face_0000.png`` ...); returns their paths.
    A stand-in for a folder of photos in the notebooks and tests."""
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = render_batch(sample_params(seed, n=n, split=split), size=size)[0]
    paths = []
    for i, im in enumerate(images):
        paths.append(folder / f"face_{i:04d}.png")
        Image.fromarray(im).save(paths[-1])
    return paths
