"""Mini-world captions: the right words, the held-out split kept apart, ManiCLIP's group
sampling, zero-shot prompts, and data/heldout.json in step with the code."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from hairlib.mini import captions as C
from hairlib.mini.render import sample_params
from hairlib.mini.vocab import (ATTRIBUTES, GROUPS, HAIR_COLOR_WORDS, HAIR_COLORS, HAIRSTYLES,
                                HELDOUT_PHRASES, LABEL_NAMES, PHRASES, values_of)

ROOT = Path(__file__).resolve().parents[1]

STYLE_WORDS = {
    "short": ("short",), "long straight": ("long", "straight"), "curly": ("curl",),
    "afro": ("afro",), "bob cut": ("bob",), "bowl cut": ("bowl",), "mohawk": ("mohawk",),
    "ponytail": ("ponytail",), "bun": ("bun",), "bangs": ("bangs", "fringe"),
    "buzz cut": ("buzz",), "bald": ("bald", "no hair", "without hair"),
}


def _words(s):
    return set(re.findall(r"[a-z]+", s.lower()))


@pytest.fixture(scope="module")
def train_corpus():
    rng = np.random.default_rng(0)
    out = []
    for p in sample_params(1, n=700):
        for style in ("full", "hair", "attr"):
            out.append(C.caption(p, rng, style=style))
    for _ in range(1500):
        out.append(C.group_sampled_sentence(rng)[0])
        out.append(C.group_sampled_sentence(rng, distinct_groups=True)[0])
    for name in LABEL_NAMES:
        for ps in C.attribute_prompts(name).values():
            out += ps
        for v in values_of(name):
            out += [C.value_sentence(name, v, rng) for _ in range(30)]
    out += C.plain_sentences()
    return out


def test_captions_name_the_hair():
    rng = np.random.default_rng(1)
    for p in sample_params(2, n=300):
        full = C.caption(p, rng, style="full")
        style = HAIRSTYLES[p.hairstyle]
        assert any(w in full for w in STYLE_WORDS[style]), (style, full)
        if style != "bald":
            color = HAIR_COLORS[p.hair_color]
            assert any(w in full for w in HAIR_COLOR_WORDS[color]), (color, full)
        held = C.caption(p, rng, style="full", split="heldout")
        assert any(w in held for w in STYLE_WORDS[style]), (style, held)
    red = sample_params(0, hairstyle="curly", hair_color="red")
    for _ in range(20):
        s = C.caption(red, rng, style="hair")
        assert any(w in s for w in HAIR_COLOR_WORDS["red"] + ("curl",)), s


def test_captions_from_labels_and_determinism():
    lab = {"hair_color": "red", "hairstyle": "afro", "gender": "female", "smiling": "yes"}
    a = C.caption(lab, np.random.default_rng(5), style="full")
    b = C.caption(lab, np.random.default_rng(5), style="full")
    assert a == b and "afro" in a
    assert C.caption({"hairstyle": "bald", "hair_color": "red"}, 0, style="hair").find("red") < 0


def test_heldout_phrasings_never_in_training_captions(train_corpus):
    text = "\n".join(train_corpus)
    for attr, d in HELDOUT_PHRASES.items():
        for v, phrases in d.items():
            assert phrases, (attr, v)
            for ph in phrases:
                assert ph not in text, (attr, v, ph)
    regexes = [C.heldout_template_regex(t) for t in C.HELDOUT_TEMPLATES]
    for s in train_corpus:
        assert not any(r.match(s) for r in regexes), s


def test_heldout_words_are_known_from_training(train_corpus):
    train_words = set()
    for s in train_corpus:
        train_words |= _words(s)
    held = set()
    for d in HELDOUT_PHRASES.values():
        for phrases in d.values():
            for ph in phrases:
                held |= _words(ph)
    for t in C.HELDOUT_TEMPLATES:
        held |= _words(re.sub(r"\{[nwp]\}", "", t))
    assert held - train_words == set()


def test_heldout_captions_use_heldout_phrasings():
    rng = np.random.default_rng(3)
    regexes = [C.heldout_template_regex(t) for t in C.HELDOUT_TEMPLATES]
    all_held = [ph for d in HELDOUT_PHRASES.values() for ps in d.values() for ph in ps]
    for p in sample_params(4, n=100, split="heldout"):
        for style in ("full", "hair", "attr"):
            s = C.caption(p, rng, style=style, split="heldout")
            assert any(r.match(s) for r in regexes), s
            assert any(ph in s for ph in all_held), s


def test_group_sampled_sentences():
    rng = np.random.default_rng(0)
    group_of = {a: g for g, attrs in GROUPS.items() for a in attrs}
    for _ in range(500):
        s, lab = C.group_sampled_sentence(rng, k=3)
        assert re.match(r"^(she|he|the person) has ", s)
        named = [a for a in lab if a != "gender"]
        assert 1 <= len(named) <= 3
        assert len({group_of[a] for a in named}) == 1, (s, lab)   # ManiCLIP: one group
        assert ("gender" in lab) == (not s.startswith("the person"))
        assert not C.is_heldout_combination(lab)
        s2, lab2 = C.group_sampled_sentence(rng, k=3, distinct_groups=True)
        named2 = [a for a in lab2 if a != "gender"]
        groups2 = [group_of[a] for a in named2]
        assert len(groups2) == len(set(groups2)) >= 2, (s2, lab2)
        assert s2.count(",") == len(named2) - 1
        for a, v in lab2.items():   # every stated value's phrase is in the sentence
            if a == "gender":
                continue
            name = (HAIR_COLORS if a == "hair_color" else HAIRSTYLES if a == "hairstyle"
                    else ATTRIBUTES[a])[v]
            assert any(ph in s2 for ph in PHRASES[a][name]["np"]), (s2, a, name)
        if lab2.get("beard") == 1 or lab2.get("mustache") == 1:
            assert not s2.startswith("she")
        if lab2.get("lipstick") == 1:
            assert not s2.startswith("he ")


def test_attribute_prompts():
    for name in LABEL_NAMES:
        tr = C.attribute_prompts(name)
        he = C.attribute_prompts(name, split="heldout")
        values = HAIR_COLORS if name == "hair_color" else HAIRSTYLES if name == "hairstyle" \
            else ATTRIBUTES[name]
        assert list(tr) == list(values) == list(he)
        for v in values:
            assert tr[v] and he[v]
            assert not set(tr[v]) & set(he[v])
    red = C.attribute_prompts("hair_color")["red"]
    assert "a photo of a person with red hair." in red


def test_heldout_json_matches_code():
    stored = json.loads((ROOT / "data" / "heldout.json").read_text())
    assert stored == json.loads(json.dumps(C.heldout_spec()))
    assert stored["combinations"] and stored["phrasings"]["hair_color"]["red"]


def test_value_sentences_state_their_value_and_plain_sentences_state_none():
    rng = np.random.default_rng(3)
    for _ in range(40):
        s = C.value_sentence("hairstyle", "afro", rng)
        assert "afro" in s, s
        s = C.value_sentence("hair_color", "red", rng)
        assert any(w in s for w in HAIR_COLOR_WORDS["red"]), s
        s = C.value_sentence("eyeglasses", "yes", rng)
        assert _words(s) & {"glasses", "eyeglasses", "spectacles", "bespectacled"}, s
        assert not _words(C.value_sentence("smiling", "yes", rng)) & {"woman", "man", "girl", "guy", "she", "he"}
    assert any(_words(C.value_sentence("gender", "female", rng)) & {"woman", "girl", "lady", "female", "she"}
               for _ in range(5))
    plain = C.plain_sentences()
    assert "a photo of an individual." in plain and "an individual." in plain
    every_phrase = {w for d in PHRASES.values() for forms in d.values() for ws in forms.values() for w in ws}
    assert not any(ph in s for s in plain for ph in every_phrase if len(ph) > 3)
    assert "a photo of a person." not in C.plain_sentences(exclude=("a photo of a person.",))
