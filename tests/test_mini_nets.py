"""Mini-world networks and their recipes' pieces (tiny, CPU)."""
import numpy as np
import torch

from hairlib.mini import render as R
from hairlib.mini import train_classifier, train_identity
from hairlib.nets.mini_nets import AttributeClassifier, multi_label_loss, nt_xent


def test_classifier_heads_cover_every_label_and_ignore_bald_colour():
    from hairlib.mini.vocab import LABEL_NAMES

    m = AttributeClassifier()
    x, y = train_classifier.render_labelled(6, np.random.default_rng(0))
    out = m(x)
    assert list(out) == list(LABEL_NAMES)
    assert out["hairstyle"].shape == (6, 12) and out["hair_color"].shape == (6, 10)
    y["hair_color"][:] = -1  # all bald: the colour head contributes nothing
    loss_all_bald = multi_label_loss({"hair_color": out["hair_color"]}, y)
    assert float(loss_all_bald) == 0.0
    assert m.features(x).shape == (6, 256)


def test_nt_xent_prefers_matching_pairs():
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    good = nt_xent(z, z)
    bad = nt_xent(z, z.roll(1, 0))
    assert good < bad


def test_same_person_keeps_identity_and_changes_the_rest():
    rng = np.random.default_rng(3)
    p = R.sample_params(rng)
    q = train_identity.same_person(p, rng)
    assert np.array_equal(p.identity(), q.identity()) and p.gender == q.gender
    assert p.to_dict() != q.to_dict()
