"""The renderer's prior as a function of z (render.params_from_uniforms, hairlib.mini.prior):
the face each latent of the mini generator is trained to draw."""
import collections

import numpy as np
import pytest
import torch

from hairlib.mini import render as R
from hairlib.mini.prior import params_from_z, sphere_uniforms


def _label_freqs(params):
    c = collections.defaultdict(collections.Counter)
    for p in params:
        for k, v in p.labels().items():
            c[k][v] += 1
    return {k: {v: n / len(params) for v, n in cv.items()} for k, cv in c.items()}


@pytest.mark.parametrize("split", ["train", None])
def test_uniform_rows_follow_the_samplers_law(split):
    n = 20_000
    a = _label_freqs(R.params_from_uniforms(np.random.default_rng(0).random((n, R.PRIOR_SLOTS)), split=split))
    b = _label_freqs(R.sample_params(1, n=n, split=split))
    gaps = {f"{k}={v}": abs(a[k].get(v, 0) - b[k].get(v, 0)) for k in b for v in set(a[k]) | set(b[k])}
    assert max(gaps.values()) < 0.02, max(gaps.items(), key=lambda kv: kv[1])  # 2 x 20 000: noise ~0.5 point


def test_the_train_prior_never_gives_a_heldout_combination_or_breaks_a_rule():
    ps = R.params_from_uniforms(np.random.default_rng(1).random((5000, R.PRIOR_SLOTS)))
    assert not any(R.is_heldout_combination(p) for p in ps)
    assert not any(p.hat and R.HAIRSTYLES[p.hairstyle] not in R.HAT_STYLES for p in ps)
    assert not any((p.beard or p.mustache) and not p.gender for p in ps)
    assert not any(p.lipstick and p.gender for p in ps)
    held = R.params_from_uniforms(np.random.default_rng(1).random((5000, R.PRIOR_SLOTS)), split=None)
    assert sum(R.is_heldout_combination(p) for p in held) > 500  # without the chain they are common


def test_each_untied_field_reads_only_its_own_slots():
    u = np.random.default_rng(2).random((200, R.PRIOR_SLOTS))
    v = u.copy()
    a, b = R._SLOTS["background"]
    v[:, a:b] = (v[:, a:b] + 0.5) % 1.0
    for a, b in zip(R.params_from_uniforms(u), R.params_from_uniforms(v)):
        diff = [f for f in R._SLOTS if getattr(a, f) != getattr(b, f)]
        assert set(diff) <= {"background"}
    assert any(a.background != b.background for a, b in zip(R.params_from_uniforms(u), R.params_from_uniforms(v)))
    with pytest.raises(ValueError, match="shape"):
        R.params_from_uniforms(u[:, :10])


def test_sphere_uniforms_are_uniform_and_read_z_only_through_pixel_norm():
    z = torch.randn(8000, 128, generator=torch.Generator().manual_seed(0))
    u = sphere_uniforms(z)
    assert u.shape == (8000, R.PRIOR_SLOTS) and u.min() >= 0 and u.max() < 1
    q = np.quantile(u, [0.1, 0.25, 0.5, 0.75, 0.9])
    assert np.abs(q - [0.1, 0.25, 0.5, 0.75, 0.9]).max() < 0.005  # 650 000 numbers
    assert np.abs(np.corrcoef(u[:, :6].T) - np.eye(6)).max() < 0.05
    assert np.allclose(sphere_uniforms(3.7 * z[:50]), u[:50], atol=1e-9)
    assert params_from_z(z[:20]) == R.params_from_uniforms(u[:20])
    with pytest.raises(ValueError, match="shape"):
        sphere_uniforms(z[:, :16])



def test_params_features_one_hot_every_categorical_field_and_keep_the_floats():
    ps = R.params_from_uniforms(np.random.default_rng(2).random((200, R.PRIOR_SLOTS)))
    f = R.params_features(ps)
    assert f.shape == (200, R.PARAM_FEATURES) and f.dtype == np.float32
    p = ps[0]
    other = R.HAIRSTYLES[(p.hairstyle + 1) % len(R.HAIRSTYLES)]
    g = R.params_features([p, p.replace(hairstyle=other), p.replace(skin_tone=0.9)])
    assert (g[0] != g[1]).sum() == 2  # one hairstyle bit off, one on
    assert (g[0] != g[2]).sum() == 1 and 0.9 in g[2]
    binary = f[:, np.all((f == 0) | (f == 1), axis=0)]
    assert binary.sum(1).min() == binary.sum(1).max()  # every row has one value per categorical field
