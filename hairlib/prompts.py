"""Prompt templates for CLIP text embeddings ("prompt engineering", Radford et al. 2021).

``IMAGENET_TEMPLATES`` are the 80 sentences the CLIP paper averaged over for zero-shot
ImageNet, in the order of OpenAI's ``Prompt_Engineering_for_ImageNet.ipynb``
(``CLIP.encode_text(templates="imagenet")``). ``STYLECLIP_TEMPLATES`` are the 79 of them that
StyleCLIP's global directions average a prompt's text embedding over: its copy of the list lacks
"a photo of many {}." (``templates="styleclip"``). Each template holds one ``{}`` for the prompt.
"""
from __future__ import annotations

import re
from typing import FrozenSet, Tuple

__all__ = ["IMAGENET_TEMPLATES", "STYLECLIP_TEMPLATES", "HAIRCLIP_HAIRSTYLES", "HAIRCLIP_COLORS", "MANICLIP_GROUPS", "content_words"]

IMAGENET_TEMPLATES: Tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

STYLECLIP_TEMPLATES: Tuple[str, ...] = tuple(t for t in IMAGENET_TEMPLATES if t != "a photo of many {}.")


# HairCLIP's vocabulary (wty-ustc/HairCLIP: mapper/hairstyle_list.txt, 44 entries used as
# "<name> hairstyle"; the README's --color_description, 12 colours used as "<name> hair").
HAIRCLIP_HAIRSTYLES: Tuple[str, ...] = (
    "afro", "bob cut", "bowl cut", "braid", "caesar cut", "chignon", "cornrows", "crew cut",
    "crown braid", "curtained hair", "dido flip", "dreadlocks", "extensions", "fade", "fauxhawk",
    "finger waves", "french braid", "frosted tips", "full crown", "harvard clip", "high and tight",
    "hime cut", "hi-top fade", "jewfro", "jheri curl", "liberty spikes", "marcel waves", "mohawk",
    "pageboy", "perm", "pixie cut", "psychobilly wedge", "quiff", "regular taper cut", "ringlets",
    "shingle bob", "short hair", "slicked-back", "spiky hair", "surfer hair", "taper cut",
    "the rachel", "undercut", "updo",
)
HAIRCLIP_COLORS: Tuple[str, ...] = ("purple", "red", "orange", "yellow", "green", "blue", "gray", "brown", "black",
                                   "white", "blond", "pink")


# ManiCLIP's decoupling groups (hwang1996/ManiCLIP, train.py ``PartTextDataset``): CelebA's 40
# attributes as lower-case phrases ("5_o_Clock_Shadow" -> "5 o clock shadow"), "male" left out
# (the sentence's pronoun says it), in five groups; a training sentence joins up to three of one
# group after "she has" / "he has" / "the person has".
MANICLIP_GROUPS = {
    "hair": ("bald", "bangs", "black hair", "blond hair", "brown hair", "gray hair", "receding hairline",
             "straight hair", "wavy hair"),
    "eye": ("arched eyebrows", "bags under eyes", "bushy eyebrows", "eyeglasses", "narrow eyes"),
    "fashion": ("attractive", "heavy makeup", "high cheekbones", "rosy cheeks", "wearing earrings", "wearing hat",
                "wearing lipstick", "wearing necklace", "wearing necktie"),
    "others": ("5 o clock shadow", "big nose", "blurry", "chubby", "double chin", "no beard", "oval face", "pale skin",
               "pointy nose", "young"),
    "mouth": ("big lips", "mouth slightly open", "smiling", "goatee", "mustache", "sideburns"),
}

# Words that say what a prompt is a picture of rather than what changes ("a photo of a person with
# red hair" and "red hair" ask for the same edit).
_FILLER = frozenset("a an the photo picture image portrait of person man woman someone face with has having "
                    "is who that and in wearing hair hairstyle hairdo haircut style".split())


def content_words(text: str) -> FrozenSet[str]:
    """The words of a prompt that name the edit, lower-cased, without filler and crudely stemmed
    ("A photo of a person with a smile." and "smiling" -> {"smil"}; "afro hairstyle" -> {"afro"})."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = set()
    for w in words:
        if w in _FILLER:
            continue
        for suffix in ("ing", "es", "e", "s"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 3:
                w = w[: -len(suffix)]
                break
        out.add(w)
    return frozenset(out)
