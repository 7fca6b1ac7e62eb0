"""The renderer's prior as a function (render.params_from_uniforms, hairlib.mini.prior) and the
mini generator's mapping fitted to it (train_stylegan2 --stage distill)."""
import collections
import json
from dataclasses import replace

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


def test_the_prior_fit_learns_the_renderers_steps(tmp_path):
    """A toy bank whose codes are one-hot hairstyles (a 12-step function of one z coordinate)
    plus the skin tone: the fitted mapping recovers them on held-out z."""
    from hairlib.mini import train_stylegan2 as T
    from hairlib.nets.stylegan2 import Generator, StyleGAN2Config
    from hairlib.train.checkpoint import read_log

    arch = StyleGAN2Config(size=8, style_dim=96, n_mlp=3, channel_multiplier=1, channel_max=8)
    G = Generator(arch)
    z = torch.randn(6000, 96, generator=torch.Generator().manual_seed(3))
    ps = params_from_z(z)
    w = torch.zeros(6000, 96)
    w[torch.arange(6000), torch.tensor([p.hairstyle for p in ps])] = 1.0
    w[:, 20] = torch.tensor([p.skin_tone for p in ps])
    synthesis = {k: v.clone() for k, v in G.state_dict().items() if not k.startswith("style.")}
    cfg = replace(T.DISTILL, held=500, map_steps=1500, map_batch=256, seed=0)
    T.fit_mapping_to_prior(G, z, w, cfg, tmp_path, progress=False)
    log = read_log(tmp_path / "log.jsonl")
    assert log[-1]["held_rel"] < 0.5 * log[0]["held_rel"]  # step 1500 against step 250
    with torch.no_grad():
        pred = G.mapping(z[:500])
    assert (pred[:, :12].argmax(1) == w[:500, :12].argmax(1)).float().mean() > 0.85  # chance: 0.08
    assert torch.corrcoef(torch.stack([pred[:, 20], w[:500, 20]]))[0, 1] > 0.8
    assert all(torch.equal(synthesis[k], v) for k, v in G.state_dict().items() if k in synthesis)


def test_distill_keeps_the_shipped_synthesis_and_resumes(tmp_path):
    from hairlib.mini import train_stylegan2 as T

    cfg = replace(T.DISTILL, encoder_steps=2, batch=4, bank=1500, held=200, map_steps=20, map_batch=128, eval_n=40)
    metrics = T.distill_shipped(tmp_path / "distill", progress=False, cfg=cfg)
    assert set(metrics) >= {"kid_samples_vs_renders", "within_5_points", "own_render"}
    assert 0 <= metrics["own_render"]["labels_agree"] <= 1
    bank = torch.load(tmp_path / "distill" / "bank.pt", weights_only=True)
    assert len(bank["z"]) == 2 and bank["config"]["bank"] == 1500  # two chunks of 1024
    path = T.export(tmp_path, dest=tmp_path / "ship", source="distill")
    new, old = T.load_generator(tmp_path / "ship").state_dict(), T.load_generator().state_dict()
    assert all(torch.equal(new[k], old[k]) for k in old if not k.startswith("style."))
    assert any(not torch.equal(new[k], old[k]) for k in old if k.startswith("style."))
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["distill"]["bank"] == 1500 and "--stage distill" in meta["command"]
    assert T.distill_shipped(tmp_path / "distill", progress=False, cfg=cfg) == metrics  # read back, not rerun
    with pytest.raises(ValueError, match="another encoder or bank config"):
        T.prior_bank(None, replace(cfg, bank_seed=1), tmp_path / "distill", progress=False)
