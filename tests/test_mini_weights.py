"""The shipped mini-world networks agree with the renderer (behaviour, on fresh renders)."""
import numpy as np
import pytest
import torch

from hairlib.mini import render as R
from hairlib.mini.shipping import WEIGHTS_DIR


@pytest.fixture(scope="module")
def fresh():
    """300 renders of the held-out attribute combinations, never seen in training."""
    params = R.sample_params(np.random.default_rng(777), n=300, split="heldout")
    images, masks, labels = R.render_batch(params)
    return params, R.to_tensor(images), labels


def test_classifier_reads_the_renderers_labels(fresh):
    from hairlib.mini.world import load_classifier

    clf = load_classifier()
    _, x, labels = fresh
    pred = clf.predict(x)
    for name, p in pred.items():
        y = torch.as_tensor(labels[name])
        keep = y >= 0
        acc = (p[keep] == y[keep]).float().mean().item()
        assert acc >= 0.9, f"{name}: {acc:.3f}"


def test_shipped_weights_are_small():
    total = sum(f.stat().st_size for f in WEIGHTS_DIR.rglob("*.safetensors"))  # the mappers too
    assert 0 < total < 50e6  # the whole mini world under 50 MB


def test_identity_net_keeps_people_apart_and_ignores_hair(fresh):
    from hairlib.mini.world import load_identity
    from hairlib.mini.vocab import HAIRSTYLES

    idn = load_identity()
    params, x, _ = fresh
    params, x = params[:100], x[:100]
    new_hair = [p.replace(hairstyle=HAIRSTYLES[(p.hairstyle + 3) % len(HAIRSTYLES)], hair_color=(p.hair_color + 4) % 10, hat=0)
                for p in params]
    y = R.to_tensor(R.render_batch(new_hair)[0])
    with torch.no_grad():
        e_x, e_y = idn(x), idn(y)
    same = (e_x * e_y).sum(1)
    strangers = (e_x * e_x.roll(1, 0)).sum(1)
    assert same.mean() > 0.9 and same.min() > 0.6  # a hair edit keeps the identity
    assert strangers.mean() < 0.3  # different people are told apart


def test_clip_reads_hair_and_eyes_like_the_renderer(fresh):
    """Zero-shot on held-out renders with held-out phrasings (README has every label's figure on
    1000 renders; here 300). Since the image tower is the attribute classifier's trunk
    (``see-conv-own``; the ResNet's on these 300: hairstyle 91, glasses 88, earrings 82, mustache
    87, age 62 %) every label but earrings, mustache and age is at the issue's target, and those
    three are near it; before the see/tell stages glasses, smiles and age were at chance."""
    from hairlib.mini.train_clip import zero_shot
    from hairlib.mini.world import load_clip_net

    acc = zero_shot(load_clip_net(), n=300, seed=777)
    assert acc["hair_color"] >= 0.95 and acc["hairstyle"] >= 0.85, acc  # the targets
    assert acc["eye_color"] >= 0.95 and acc["gender"] >= 0.95 and acc["beard"] >= 0.9, acc
    assert acc["smiling"] >= 0.9 and acc["lipstick"] >= 0.9 and acc["eyeglasses"] >= 0.88, acc  # targets (1000: 90.4)
    assert acc["hat"] >= 0.88 and acc["earrings"] >= 0.83 and acc["mustache"] >= 0.83 and acc["age"] >= 0.78, acc


def test_parser_finds_the_renderers_masks(fresh):
    from hairlib.mini.world import load_parser

    parser = load_parser()
    params, x, _ = fresh
    truth = R.render_batch(params[:100])[1]
    m = parser.masks(x[:100])
    for name in ("hair", "face", "background"):
        t = torch.as_tensor(truth[name])
        p = m[name][:, 0] > 0.5
        iou = (p & t).sum().item() / max((p | t).sum().item(), 1)
        assert iou >= 0.85, f"{name}: IoU {iou:.3f}"
