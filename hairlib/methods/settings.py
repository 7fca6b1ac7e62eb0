"""Settings by name: one typed record of every method's settings, per world.

    hairlib.edit(world, w, "curly hair", method="optimize", settings="paper")   # the authors' values
    hairlib.edit(world, w, "curly hair", method="optimize")                     # the world's (default)

``PAPER`` holds exactly the authors' values and code paths (StyleCLIP's ``run_optimization.py``,
``global_directions``, ``mapper/``; HairCLIP's ``mapper/``). A world carries its own ``Settings``
(``World.settings``): the ffhq world's are ``PAPER``; the mini world's differ where the paper's
values do not transfer to a 64 px generator and a small CLIP, each difference named in
``MINI_REASONS`` with the measured reason (README, "Settings"). Every method resolves its settings
through ``resolve`` inside the method, so the library, the CLI and the notebooks agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Dict, Optional, Union

from hairlib.methods.global_dir import GlobalConfig, GlobalEditConfig
from hairlib.methods.hairclip import HairCLIPConfig
from hairlib.methods.maniclip import ManiCLIPTrainConfig
from hairlib.methods.mapper import MapperConfig
from hairlib.methods.optimize import OptimizeConfig

__all__ = ["Settings", "PAPER", "MINI", "MINI_REASONS", "resolve", "differences"]


@dataclass(frozen=True)
class Settings:
    """Every method's settings. ``hairclip_reference``: how a reference image becomes HairCLIP's
    condition at edit time, "image" (the paper's CLIP image embedding) or "text" (CLIP's zero-shot
    reading of it as the mapper's vocabulary)."""
    name: str = "paper"
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    global_edit: GlobalEditConfig = field(default_factory=GlobalEditConfig)
    global_preprocess: GlobalConfig = field(default_factory=GlobalConfig)
    mapper: MapperConfig = field(default_factory=MapperConfig)
    hairclip: HairCLIPConfig = field(default_factory=HairCLIPConfig)
    maniclip: ManiCLIPTrainConfig = field(default_factory=ManiCLIPTrainConfig)
    hairclip_reference: str = "image"

    def __post_init__(self):
        if self.hairclip_reference not in ("image", "text"):
            raise ValueError(f"hairclip_reference must be 'image' or 'text', not {self.hairclip_reference!r}")


PAPER = Settings()

# The mini world: a 64 px generator (W+ 10 x 128), a small CLIP trained on normalised renders.
MINI = Settings(
    name="mini",
    optimize=replace(PAPER.optimize, l2_lambda=0.02, id_lambda=0.3, augment=8, steps=100, clip_input="normalized"),
    global_edit=replace(PAPER.global_edit, alpha=1.5, beta=0.2),
    global_preprocess=replace(PAPER.global_preprocess, n_stats=20_000, n_images=16, max_resolution=64, batch=128),
    mapper=replace(PAPER.mapper, steps=2000, batch=8, clip_input="normalized"),
    hairclip=replace(PAPER.hairclip, steps=12000, batch=4, clip_input="normalized"),
    maniclip=replace(PAPER.maniclip, steps=3000, clip_input="normalized"),
    hairclip_reference="text",
)

# Why each of MINI's values differs from the paper's (validation faces, CPU; README "Settings").
MINI_REASONS: Dict[str, str] = {
    "clip_input": "the mini CLIP was trained on CLIP-normalised pixels; raw [-1, 1] input is out of its domain",
    "optimize.augment": "the small CLIP is fooled by pixel patterns: blond reached on 15 % of faces without "
                        "views, 100 % with 8 (sweep, 16 faces)",
    "optimize.id_lambda": "with views the edits are real; 0.3 keeps the person (0.005 lets identity drift)",
    "optimize.l2_lambda": "StyleCLIP's 0.008 is for a sum over 18 x 512 numbers; the mini W+ has 10 x 128",
    "optimize.steps": "100 steps did as well as 300 on the sweep's faces",
    "global_edit.alpha": "alpha 4.1 / beta 0.15 push the 64 px generator off its faces (identity ~0.1)",
    "global_edit.beta": "the mini CLIP's relevances are lower: beta 0.2 gives 24 % success at identity 0.65",
    "global_preprocess": "a CPU-sized budget: 20 000 samples for the statistics, 16 images per channel",
    "mapper.steps": "the CPU budget (2 000 steps x 8 faces, not 50 000 x 2)",
    "mapper.batch": "the CPU budget: fewer steps, more faces each",
    "hairclip.steps": "the CPU budget (12 000 steps x 4 faces, not 500 000 x 1)",
    "hairclip.batch": "the CPU budget: fewer steps, more faces each",
    "maniclip.steps": "the CPU budget (3 000 steps x 16 faces, not 46 860 x 16)",
    "hairclip_reference": "the mini CLIP's image embeddings lie far from its text embeddings: colour from a "
                          "reference render reached on 89 % read as text",
}


def differences(s: Settings, base: Settings = PAPER) -> Dict[str, tuple]:
    """Every value of ``s`` that differs from ``base``: dotted name -> (base's, s's)."""
    out: Dict[str, tuple] = {}
    for f in fields(Settings):
        if f.name == "name":
            continue
        a, b = getattr(base, f.name), getattr(s, f.name)
        if hasattr(a, "__dataclass_fields__"):
            for g in fields(a):
                if getattr(a, g.name) != getattr(b, g.name):
                    out[f"{f.name}.{g.name}"] = (getattr(a, g.name), getattr(b, g.name))
        elif a != b:
            out[f.name] = (a, b)
    return out


def resolve(world, settings: Union[None, str, Settings] = None) -> Settings:
    """``None`` or ``"world"``: the world's own settings; ``"paper"``: ``PAPER``; a ``Settings``: itself
    (each method picks its own record the same way, ``hairlib.methods.result.method_settings``)."""
    if settings is None or settings == "world":
        return getattr(world, "settings", None) or PAPER
    if settings == "paper":
        return PAPER
    if isinstance(settings, Settings):
        return settings
    raise ValueError(f"settings must be 'paper', 'world' or a hairlib.methods.settings.Settings, not {settings!r}")


def settings_for(world_name: str) -> Optional[Settings]:
    return {"mini": MINI, "ffhq": PAPER}.get(world_name)
