"""The mini CLIP recipe end to end at toy size: captions, loss, zero-shot, fp16 export, reload."""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hairlib.mini import render as R
from hairlib.mini import train_clip as T
from hairlib.mini.world import load_clip_net
from hairlib.nets.clip import CLIP, _bpe_tokenizer

TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 48, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1}}


def test_captions_describe_their_render():
    rng = np.random.default_rng(0)
    params = R.sample_params(rng, n=30, split="train")
    caps = T.captions_for(params, rng)
    assert len(caps) == 30 and all(isinstance(c, str) and len(c) > 5 for c in caps)
    toks = _bpe_tokenizer(48)(caps)
    assert toks.shape == (30, 48) and (toks[:, 0] == 49406).all()  # CLIP's start token


def test_contrastive_loss_rewards_matching_pairs():
    class Stub(torch.nn.Module):  # image i and text i embed to the same axis
        logit_scale = torch.tensor(np.log(50.0))

        def __init__(self, perm):
            super().__init__()
            self.perm = perm

        def encode_image(self, x):
            return torch.eye(4)

        def encode_text(self, t):
            return torch.eye(4)[self.perm]

    x, t = torch.zeros(4, 3, 64, 64), torch.zeros(4, 48, dtype=torch.long)
    matched = T.contrastive_loss(Stub([0, 1, 2, 3]), x, t)
    shuffled = T.contrastive_loss(Stub([1, 0, 3, 2]), x, t)
    assert matched < 0.01 < np.log(4) < shuffled


def test_recipe_round_trip(tmp_path):
    model = T.train(replace(T.RECIPE, steps=2, batch=8), tmp_path / "run", config=TINY, progress=False)
    clip = CLIP(model, _bpe_tokenizer(48), name="mini-clip")
    acc = T.zero_shot(clip, n=16)
    assert set(acc) >= {"hair_color", "hairstyle", "smiling"} and all(0 <= v <= 1 for v in acc.values())
    T.export(model, {"heldout": acc}, replace(T.RECIPE, steps=2), config=TINY, dest=tmp_path / "w")
    back = load_clip_net(tmp_path / "w")
    assert back.dtype == torch.float32
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(back.encode_image(x), clip.encode_image(x), atol=1e-2)  # fp16 storage
    import json

    meta = json.loads((tmp_path / "w" / "clip.json").read_text())
    assert meta["command"] == "python -m hairlib.mini.train_clip" and "previous_command" not in meta
    # a stage's export names its stage and every command before it: the CLIP it replaced, that
    # CLIP's own history, then the unexported stage whose state.pt it started from
    T.export(model, {"heldout": acc}, replace(T.TELL, steps=7), config=TINY, dest=tmp_path / "w")
    meta = json.loads((tmp_path / "w" / "clip.json").read_text())
    assert meta["command"] == "python -m hairlib.mini.train_clip --stage tell"
    assert meta["previous_command"] == ("python -m hairlib.mini.train_clip; "
                                        "then python -m hairlib.mini.train_clip --stage see --no-export")
    T.export(model, {"heldout": acc}, replace(T.TELL_RESNET, steps=7), config=TINY, dest=tmp_path / "w")
    meta = json.loads((tmp_path / "w" / "clip.json").read_text())
    assert meta["command"] == "python -m hairlib.mini.train_clip --stage tell-resnet"
    assert meta["previous_command"] == (
        "python -m hairlib.mini.train_clip; then python -m hairlib.mini.train_clip --stage see --no-export; "
        "then python -m hairlib.mini.train_clip --stage tell; "
        "then python -m hairlib.mini.train_clip --stage see-resnet --no-export")


def _start(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    start = T.build_model(TINY)[0]
    save_file({k: v.contiguous() for k, v in start.state_dict().items()}, str(tmp_path / "start.safetensors"))
    return start, str(tmp_path / "start.safetensors")


def test_see_then_tell_train_one_tower_each(tmp_path):
    """"see" trains the image tower only (the text tower and logit scale stay bit for bit); then
    LiT's order ("tell"): started from that run's state.pt (its probes dropped), the image tower
    stays bit for bit while the text tower and the logit scale move."""
    start, path = _start(tmp_path)
    see = replace(T.SEE, steps=2, batch=8, init=path, ckpt_every=100)
    seen = T.train(see, tmp_path / "see", config=TINY, progress=False)
    text = [k for k in start.state_dict() if not k.startswith("visual.")]
    assert text and all(torch.equal(start.state_dict()[k], seen.state_dict()[k]) for k in text)
    assert any(not torch.equal(v, seen.state_dict()[k]) for k, v in start.state_dict().items() if k.startswith("visual."))
    state = torch.load(tmp_path / "see" / "state.pt", weights_only=True)
    assert any(k.startswith("probes.") for k in state["model"])  # trained beside, dropped at init
    assert set(T.init_weights(str(tmp_path / "see" / "state.pt"))) == set(start.state_dict())
    tell = replace(T.TELL, steps=3, batch=8, lr=3e-3, init=str(tmp_path / "see" / "state.pt"), ckpt_every=100)
    model = T.train(tell, tmp_path / "tell", config=TINY, progress=False)
    before, after = seen.state_dict(), model.state_dict()
    image = [k for k in before if k.startswith("visual.")]
    assert image and all(torch.equal(before[k], after[k]) for k in image)
    assert not torch.equal(before["text_projection"], after["text_projection"])
    with pytest.raises(ValueError, match="nothing to train"):
        T.train(replace(tell, freeze_text=True), tmp_path / "both", config=TINY, progress=False)
    with pytest.raises(FileNotFoundError, match="init weights"):
        T.init_weights(str(tmp_path / "missing.pt"))


def test_tell_holds_the_hairclip_prompts(tmp_path):
    """The text tower trains, but the raw embeddings of HairCLIP's prompts stay near the start's."""
    start, path = _start(tmp_path)
    tok = _bpe_tokenizer(48)
    tokens, target = T.keep_targets(start.eval(), tok)
    assert len(tokens) == 21  # 11 mini hairstyles with hair + 10 colours

    def drift(keep_weight, name):
        cfg = replace(T.TELL, steps=15, batch=8, lr=3e-3, init=path, keep_weight=keep_weight, ckpt_every=100)
        model = T.train(cfg, tmp_path / name, config=TINY, progress=False).eval()
        with torch.no_grad():
            return ((model.encode_text(tokens) - target).pow(2).mean() / target.pow(2).mean()).item()

    free, held = drift(0.0, "free"), drift(10.0, "held")
    assert held < 0.5 * free, (held, free)


def test_prototype_loss_rewards_images_at_their_values_prototypes():
    from hairlib.mini.vocab import LABEL_NAMES, values_of

    model = T.build_model(TINY)[0].eval()
    protos = T.label_prototypes(model, _bpe_tokenizer(48))
    assert set(protos) == set(LABEL_NAMES)
    for k, p in protos.items():
        assert p.shape == (len(values_of(k)), 16) and torch.allclose(p.norm(dim=1), torch.ones(len(p)), atol=1e-5)

    class Stub(torch.nn.Module):  # every image embeds exactly at the prototype of value 1 of "smiling"
        logit_scale = torch.tensor(np.log(100.0))

        def encode_image(self, x):
            return protos["smiling"][1].expand(len(x), -1)

    x = torch.zeros(4, 3, 64, 64)
    one = {"smiling": protos["smiling"]}
    right = T.prototype_loss(Stub(), x, {"smiling": torch.ones(4, dtype=torch.long)}, one)
    wrong = T.prototype_loss(Stub(), x, {"smiling": torch.zeros(4, dtype=torch.long)}, one)
    skipped = T.prototype_loss(Stub(), x, {"smiling": torch.tensor([1, -1, -1, -1])}, one)
    assert right < wrong and torch.isclose(right, skipped)


def test_hold_loss_is_zero_for_the_teacher_and_grows_as_the_image_side_drifts():
    torch.manual_seed(0)
    text = torch.randn(21, 16)  # keep_targets' rows: 11 hairstyles, then 10 colours
    img = torch.randn(8, 16)
    scale = torch.tensor(50.0)
    assert T.hold_loss(img, text, img, text, scale).abs() < 1e-6
    near = T.hold_loss(img + 0.1 * torch.randn(8, 16), text, img, text, scale)
    far = T.hold_loss(torch.randn(8, 16), text, img, text, scale)
    assert 0 < near < far
    # the two softmaxes are separate: moving the image toward another colour prompt only is
    # seen even when the hairstyle reading is unchanged
    only_colour = img.clone()
    only_colour += 3 * F.normalize(text[11 + 4], dim=0) * img.norm(dim=1, keepdim=True)
    assert T.hold_loss(only_colour, text, img, text, scale) > near


def test_see_keeps_the_teacher_after_a_resume(tmp_path):
    """The frozen teacher and keep targets are the start's weights, also when a run resumes
    (its model then loads the checkpoint, not ``init``)."""
    start, path = _start(tmp_path)
    cfg = replace(T.SEE, steps=2, batch=8, init=path, ckpt_every=1)
    T.train(cfg, tmp_path / "run", config=TINY, progress=False)
    seen = {}
    real = T.hold_loss

    def spy(image_emb, text_emb, teacher_image, teacher_text, scale):
        seen["teacher_text"] = teacher_text
        return real(image_emb, text_emb, teacher_image, teacher_text, scale)

    T.hold_loss = spy
    try:
        T.train(replace(cfg, steps=3), tmp_path / "run", config=TINY, progress=False)
    finally:
        T.hold_loss = real
    _, target = T.keep_targets(start.eval(), _bpe_tokenizer(48))
    assert torch.allclose(seen["teacher_text"], target, atol=1e-5)


def test_prototype_focus_weighs_the_mean():
    losses = {}
    protos = {"smiling": F.normalize(torch.eye(2, 16), dim=1), "eyeglasses": F.normalize(torch.eye(2, 16), dim=1)}

    class Stub(torch.nn.Module):  # right about smiles (value 1), wrong about glasses (value 0)
        logit_scale = torch.tensor(np.log(100.0))

        def encode_image(self, x):
            return torch.eye(2, 16)[1].expand(len(x), -1)

    x = torch.zeros(4, 3, 64, 64)
    labels = {"smiling": torch.ones(4, dtype=torch.long), "eyeglasses": torch.zeros(4, dtype=torch.long)}
    for w in (1, 3):
        losses[w] = T.prototype_loss(Stub(), x, labels, protos, weights={"eyeglasses": w})
    plain = T.prototype_loss(Stub(), x, labels, protos)
    assert torch.isclose(plain, losses[1]) and losses[3] > losses[1]


def test_checkpoint_report_reads_a_runs_state_and_its_probes(tmp_path):
    cfg = replace(T.RECIPE, steps=1, batch=8, probe_weight=1.0, ckpt_every=1)
    T.train(cfg, tmp_path / "run", config=TINY, progress=False)
    r = T.checkpoint_report(tmp_path / "run" / "state.pt", n=12, config=TINY)
    assert r["step"] == 1 and set(r["probe"]) == set(r["heldout"])
    assert all(0 <= v <= 1 for v in [*r["heldout"].values(), *r["probe"].values()])


TINY_RESNET = dict(TINY, vision_cfg={"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16})


def test_a_fresh_resnet_tower_learns_the_teachers_embedding_and_ships(tmp_path):
    """"see-resnet": a new convolutional image tower beside the init's text tower (kept bit for bit),
    drawn to the init ViT's image embedding (distill); "tell-resnet" then locks it, batch-norm
    statistics included; the export reloads with its own config."""
    import json

    start, path = _start(tmp_path)
    (tmp_path / "start.json").write_text(json.dumps({"config": TINY}))  # the init's own architecture
    assert T.init_config(path) == TINY and T.config_of(T.SEE_RESNET)["vision_cfg"]["layers"] == [2, 2, 2, 2]
    images = T._normalize(R.to_tensor(R.render_batch(R.sample_params(np.random.default_rng(5), n=16))[0]))
    with torch.no_grad():
        teacher = start.eval().encode_image(images)

    def cosine(model):
        with torch.no_grad():
            return float(F.cosine_similarity(model.eval().encode_image(images), teacher).mean())

    see = replace(T.SEE_RESNET, steps=30, batch=16, lr=3e-3, init=path, contrastive_weight=0.0, probe_weight=0.0,
                  hold_weight=0.0, ckpt_every=100)
    fresh = T.train(replace(see, steps=0), tmp_path / "fresh", config=TINY_RESNET, progress=False)
    seen = T.train(see, tmp_path / "see", config=TINY_RESNET, progress=False)
    assert "visual.layer1.0.conv1.weight" in seen.state_dict() and "visual.attnpool.c_proj.weight" in seen.state_dict()
    before, after = start.state_dict(), seen.state_dict()
    text = [k for k in before if not k.startswith("visual.")]
    assert text and all(torch.equal(before[k], after[k]) for k in text)
    assert cosine(seen) > cosine(fresh) + 0.2, (cosine(fresh), cosine(seen))

    tell = replace(T.TELL_RESNET, steps=3, batch=8, lr=3e-3, init=str(tmp_path / "see" / "state.pt"), ckpt_every=100)
    assert T.init_config(tell.init) == TINY_RESNET
    told = T.train(tell, tmp_path / "tell", config=TINY_RESNET, progress=False)
    image = {k: v for k, v in seen.state_dict().items() if k.startswith("visual.")}
    assert any("running_mean" in k for k in image)
    assert all(torch.equal(v, told.state_dict()[k]) for k, v in image.items())
    assert not torch.equal(after["text_projection"], told.state_dict()["text_projection"])

    T.export(told, {}, tell, config=TINY_RESNET, dest=tmp_path / "weights")
    shipped = load_clip_net(tmp_path / "weights")
    with torch.no_grad():
        ref = F.normalize(told.eval().encode_image(images), dim=-1)
        got = F.normalize(shipped.model.encode_image(images), dim=-1)
    assert float((ref * got).sum(-1).min()) > 0.99  # fp16 weights
    with pytest.raises(ValueError, match="init"):
        T.train(replace(see, init=""), tmp_path / "none", config=TINY_RESNET, progress=False)
    with pytest.raises(ValueError, match="unknown image tower"):
        T.config_of(replace(see, vision="vgg"))


def test_framed_prompts_vary_the_frame_never_use_zero_shots_neutral_and_train_the_text(tmp_path):
    """``tell-frames``: the prototypes' prompts are drawn afresh each step in training templates, in
    value order, a binary attribute's absence as plain sentences, never zero-shot's neutral ones; a
    locked-image stage with them trains the text tower (the image tower stays bit for bit)."""
    from hairlib.mini.vocab import LABEL_NAMES, values_of

    a, b = T.framed_prompts(np.random.default_rng(0), k=3), T.framed_prompts(np.random.default_rng(1), k=3)
    assert list(a) == list(LABEL_NAMES) and a != b
    for name in LABEL_NAMES:
        assert list(a[name]) == list(values_of(name)) and all(len(ps) == 3 for ps in a[name].values())
    every = {s for d in (a, b) for v in d.values() for ps in v.values() for s in ps}
    assert not every & set(T.NEUTRAL_PROMPTS)
    assert len({s for d in (a, b) for s in d["eyeglasses"]["yes"]}) >= 4  # several frames, not one prompt
    protos = T.label_prototypes(T.build_model(TINY)[0].eval(), _bpe_tokenizer(48), prompts=a)
    assert all(protos[k].shape == (len(values_of(k)), 16) for k in LABEL_NAMES)

    start, path = _start(tmp_path)
    cfg = replace(T.TELL_FRAMES, vision="", steps=3, batch=8, lr=3e-3, init=path, ckpt_every=100)
    model = T.train(cfg, tmp_path / "frames", config=TINY, progress=False)
    before, after = start.state_dict(), model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("visual."))
    assert not torch.equal(before["text_projection"], after["text_projection"])


def test_zero_shot_by_combination_groups_renders_by_their_heldout_pair(monkeypatch):
    """A CLIP right everywhere except on one held-out combination shows 0 there and 1 elsewhere (a
    render carrying two combinations counts under the first listed: here the first of all)."""
    import numpy as np

    from hairlib.mini.vocab import HELDOUT_COMBINATIONS, value_index

    x, labels = T.heldout_renders(120, seed=5)
    bad = HELDOUT_COMBINATIONS[0]
    key = ",".join(f"{k}={v}" for k, v in bad.items())
    hit = np.all([np.asarray(labels[k]) == value_index(k, v) for k, v in bad.items()], axis=0)
    assert hit.any() and not hit.all()

    def predictions(clip, images, phrasings):
        out = {k: torch.as_tensor(v) for k, v in labels.items()}
        out["earrings"] = torch.where(torch.as_tensor(hit), 1 - out["earrings"], out["earrings"])
        return out

    monkeypatch.setattr(T, "heldout_renders", lambda n, seed, split="heldout": (x, labels))
    monkeypatch.setattr(T, "_zero_shot_predictions", predictions)
    by = T.zero_shot_by_combination(None, n=120, seed=5)
    names = {",".join(f"{k}={v}" for k, v in c.items()) for c in HELDOUT_COMBINATIONS}
    assert set(by["earrings"]) <= names and by["earrings"][key] == 0.0
    assert all(v == 1.0 for k, v in by["earrings"].items() if k != key)
    assert all(v == 1.0 for k, acc in by.items() if k != "earrings" for v in acc.values())


def test_the_classifier_trunk_tower_is_an_open_clip_timm_config_and_ships(tmp_path):
    """VISION["conv"]: open_clip builds hairlib's registered timm tower (the attribute classifier's
    trunk, mean-pooled, a linear projection); a CLIP with it exports in fp16 and reloads from its
    own config alone, and a config naming a tower nobody registered still fails as open_clip's."""
    from hairlib.nets import mini_towers
    from hairlib.nets.clip import build_model

    config = dict(TINY, vision_cfg=dict(T.VISION["conv"]))
    model = build_model(config)[0].eval()
    sd = model.state_dict()
    assert "visual.trunk.trunk.0.weight" in sd and sd["visual.head.proj.weight"].shape == (16, 256)
    assert sd["visual.trunk.trunk.0.weight"].shape == (32, 3, 3, 3)  # full resolution first, as the classifier
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        emb = model.encode_image(x)
        feats = model.visual.trunk.trunk(x).mean((2, 3))
    assert emb.shape == (4, 16)
    assert torch.allclose(emb, model.visual.head.proj(feats), atol=1e-5)  # a mean, then the projection
    T.export(model, {}, replace(T.SEE_CONV_OWN, steps=1), config=config, dest=tmp_path / "w")
    back = load_clip_net(tmp_path / "w")
    with torch.no_grad():
        got = back.model.encode_image(x)
    assert float(F.cosine_similarity(got, emb).min()) > 0.99  # fp16 weights
    with pytest.raises(ValueError, match="pretrained"):
        mini_towers.hairlib_mini_convnet(pretrained=True)
    with pytest.raises(Exception):
        build_model(dict(TINY, vision_cfg={"image_size": 64, "timm_model_name": "hairlib_no_such_tower"}))
