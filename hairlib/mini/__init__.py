"""The mini world's data: a procedural face renderer with exact masks and labels
(``hairlib.mini.render``), template captions with a held-out split (``hairlib.mini.captions``)
and the vocabulary both share (``hairlib.mini.vocab``).

``hairlib.mini.render`` is the module; the function is ``hairlib.mini.render.render`` (not
re-exported here, so the module name stays the module)."""
from . import captions, render, vocab
from .captions import attribute_prompts, caption, group_sampled_sentence
from .render import (FaceParams, RenderResult, from_tensor, is_heldout_combination,
                     render_batch, sample_params, to_tensor)
from .vocab import ATTRIBUTES, GROUPS, HAIR_COLORS, HAIRSTYLES, LABEL_NAMES, NO_HAIR_COLOR

__all__ = [
    "captions", "render", "vocab",
    "ATTRIBUTES", "GROUPS", "HAIR_COLORS", "HAIRSTYLES", "LABEL_NAMES", "NO_HAIR_COLOR",
    "FaceParams", "RenderResult", "render_batch", "sample_params", "to_tensor", "from_tensor",
    "is_heldout_combination", "caption", "group_sampled_sentence", "attribute_prompts",
]
