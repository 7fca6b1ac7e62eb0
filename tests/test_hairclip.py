"""HairCLIP: the authors' losses, the training loop (sampling, resuming), save/load, the CLI."""
import numpy as np
import pytest
import torch

from hairlib.methods import hairclip as H
from hairlib.methods.losses import average_lab, avg_lab_loss, background_loss, rgb_to_lab
from hairlib.mini.data import render_references
from hairlib.nets.hair_mapper import HairMapper


def _flat(rgb, n=1, size=4):
    """An image of one colour, rgb in [0, 1] -> [-1, 1]."""
    return (torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1) * 2 - 1).expand(n, 3, size, size).clone()


def test_lab_follows_the_authors_formulas():
    white, black = rgb_to_lab(_flat([1, 1, 1]))[0, :, 0, 0], rgb_to_lab(_flat([0, 0, 0]))[0, :, 0, 0]
    assert torch.allclose(white, torch.tensor([100.0, 0, 0]), atol=1e-3)  # rows of M normalised: white is (1, 1, 1)
    assert torch.allclose(black, torch.zeros(3), atol=1e-3)
    # mid gray with no gamma expansion: Y = 0.5 -> L = 116 * 0.5^(1/3) - 16
    assert rgb_to_lab(_flat([0.5, 0.5, 0.5]))[0, 0, 0, 0].item() == pytest.approx(116 * 0.5 ** (1 / 3) - 16, abs=1e-3)
    # a dark value takes the linear branch (903.3 * Y)
    assert rgb_to_lab(_flat([0.005] * 3))[0, 0, 0, 0].item() == pytest.approx(903.3 * 0.005, rel=1e-4)
    red, blue = rgb_to_lab(_flat([1, 0, 0]))[0, :, 0, 0], rgb_to_lab(_flat([0, 0, 1]))[0, :, 0, 0]
    assert red[1] > 50 and blue[2] < -50  # red is +a, blue is -b


def test_average_lab_is_taken_over_the_mask_only():
    x = _flat([1, 0, 0], size=8)
    x[:, :, :, 4:] = _flat([0, 0, 1], size=8)[:, :, :, 4:]
    left = torch.zeros(1, 1, 8, 8)
    left[..., :4] = 1
    assert torch.allclose(average_lab(x, left), rgb_to_lab(_flat([1, 0, 0]))[:, :, 0, 0], atol=1e-4)
    assert avg_lab_loss(x, left, _flat([1, 0, 0], size=8), torch.ones(1, 1, 8, 8)).item() < 1e-4
    assert avg_lab_loss(x, 1 - left, _flat([1, 0, 0], size=8), torch.ones(1, 1, 8, 8)).item() > 50
    # gradients stay finite through black pixels (the cube root's branch)
    y = torch.zeros(1, 3, 4, 4, requires_grad=True)
    avg_lab_loss(y * 2 - 1, torch.ones(1, 1, 4, 4), _flat([0.5, 0.2, 0.1]), torch.ones(1, 1, 4, 4)).backward()
    assert torch.isfinite(y.grad).all()


def test_background_loss_ignores_the_hair_of_either_image():
    x, x_hat = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    hair, hair_hat = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    hair[..., :2, :] = 1
    hair_hat[..., :3, :] = 1  # the edit grew the hair one row longer
    x_hat[..., :3, :] = 0.7  # ... and changed only there
    assert background_loss(x, x_hat, hair, hair_hat).item() == 0
    x_hat[..., 5, :] = 0.5  # a change outside both masks counts
    assert background_loss(x, x_hat, hair, hair_hat).item() == pytest.approx(0.25 * 8 * 3 / (3 * 64))


def test_edit_kinds_follow_the_papers_probabilities():
    cfg = H.HairCLIPConfig()
    rng = np.random.default_rng(0)
    kinds = [H._edit_kind(cfg, rng) for _ in range(20000)]
    freq = {k: kinds.count(k) / len(kinds) for k in [(True, False), (False, True), (True, True), (False, False)]}
    assert freq[(True, False)] == pytest.approx(0.5, abs=0.015)
    assert freq[(False, True)] == pytest.approx(0.2, abs=0.015)
    assert freq[(True, True)] == pytest.approx(0.27, abs=0.015)
    assert freq[(False, False)] == pytest.approx(0.03, abs=0.01)
    with pytest.raises(ValueError, match="at most 1"):
        H.HairCLIPConfig(p_hairstyle=0.6, p_color=0.5)


def test_render_references_have_the_asked_hair():
    from hairlib.mini.vocab import HAIR_COLOR_RGB, HAIR_COLORS, HAIRSTYLES

    images, hair = render_references("hairstyle", ["afro", "bob cut"], np.random.default_rng(0))
    assert images.shape == (2, 3, 64, 64) and hair.shape == (2, 1, 64, 64)
    assert 0 < hair.mean() < 0.6 and images.min() >= -1 and images.max() <= 1
    colors = render_references("color", ["purple"] * 3, np.random.default_rng(1))
    purple = torch.tensor(HAIR_COLOR_RGB["purple"]) / 127.5 - 1
    mean = (colors[0] * colors[1]).sum((2, 3)) / colors[1].sum((2, 3))
    assert ((mean - purple).abs().max(1).values < 0.35).all()  # the hair is purple-ish in every reference
    assert "bald" not in H.hairclip_vocab(type("W", (), {"name": "mini", "vocab": {
        "hairstyles": HAIRSTYLES, "hair_colors": HAIR_COLORS}})())[0]
    with pytest.raises(ValueError, match="kind"):
        render_references("beard", ["yes"], np.random.default_rng(0))


def test_save_load_and_the_authors_checkpoint(tmp_path):
    m = HairMapper(10, 16, 8)
    m.strength, m.vocab = 0.1, {"hairstyles": ["afro"], "colors": ["red"]}
    path = H.save_hair_mapper(m, tmp_path / "hc.safetensors")
    back = H.load_hair_mapper(path)
    w, e = torch.randn(2, 10, 16), torch.randn(2, 8)
    assert torch.allclose(back(w, e, None), m(w, e, None)) and back.vocab == m.vocab
    full = HairMapper()
    sd = {f"mapper.{k}": v for k, v in full.state_dict().items()}
    sd["mapper.clip_model.positional_embedding"] = torch.zeros(77, 512)
    sd["decoder.style.1.weight"] = torch.zeros(4, 4)
    torch.save({"state_dict": sd, "opts": {}}, tmp_path / "hairclip.pt")
    authors = H.load_hair_mapper(tmp_path / "hairclip.pt")
    assert (authors.num_ws, authors.dim, authors.embed_dim) == (18, 512, 512)
    torch.save({"state_dict": {"mapper.foo": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no HairCLIP mapper weights"):
        H.load_hair_mapper(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        H.load_hair_mapper(tmp_path / "missing.safetensors")


def test_training_runs_every_loss_and_resumes_exactly(tiny_weights, tmp_path):
    import json

    import hairlib

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    cfg = H.HairCLIPConfig(steps=8, batch=2, log_every=1, ckpt_every=4)
    full = H.train_hairclip(world, cfg, tmp_path / "a", progress=False)
    H.train_hairclip(world, cfg, tmp_path / "b", progress=False, steps=5)  # "interrupted" at step 5
    resumed = H.train_hairclip(world, cfg, tmp_path / "b", progress=False)
    for (k, v), v2 in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v, v2, atol=1e-6), k
    logs = [json.loads(s) for s in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    seen = set().union(*[r.keys() for r in logs])
    assert {"id", "background", "l2"} <= seen and any(k.startswith("text_") for k in seen)
    assert all(np.isfinite(r["loss"]) for r in logs)
    w = world.sample(2, seed=3)
    r = hairlib.edit(world, w, method="hairclip", hairstyle="afro hairstyle", mapper=full)
    assert r.images.shape == (2, 3, 16, 16)
    # the strength defaults to the mapper's own (trained at, and saved with, cfg.strength)
    full.strength = 0.25
    r = hairlib.edit(world, w, method="hairclip", hairstyle="afro hairstyle", mapper=full)
    half = hairlib.edit(world, w, method="hairclip", hairstyle="afro hairstyle", mapper=full, strength=0.125)
    assert r.info["strength"] == 0.25 and half.info["strength"] == 0.125
    assert torch.allclose(half.latents - w, (r.latents - w) / 2, atol=1e-5)



def test_a_world_without_a_renderer_takes_other_faces_as_references(tiny_weights, tmp_path):
    """The paper's reference sampling on every world: without World.references (the ffhq world),
    reference conditions are other faces' images with their hair masks, never silently dropped."""
    import hairlib

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    world.references = None
    refs = H.generated_references(world)
    images, hair = refs("color", ["red", "blue", "pink"], np.random.default_rng(0))
    again, _ = refs("color", ["red", "blue", "pink"], np.random.default_rng(0))
    assert images.shape == (3, 3, 16, 16) and hair.shape == (3, 1, 16, 16) and torch.equal(images, again)
    latents = world.sample(5, seed=1)
    from_latents, _ = H.generated_references(world, latents)("hairstyle", ["afro"] * 4, np.random.default_rng(1))
    assert any(torch.allclose(from_latents[0], x, atol=1e-5) for x in world.generate(latents).clamp(-1, 1))
    asked = []
    cfg = H.HairCLIPConfig(steps=6, batch=2, log_every=1, ckpt_every=100, p_hairstyle_text=0.0, p_color_text=0.0)
    H.train_hairclip(world, cfg, tmp_path / "run", progress=False,
                     references=lambda kind, names, rng: asked.append(kind) or refs(kind, names, rng))
    assert asked  # reference conditions are drawn
    H.train_hairclip(world, cfg, tmp_path / "run2", progress=False)  # and the default path runs them

def test_color_weights_set_the_odds_of_each_target_colour(tiny_weights, tmp_path, monkeypatch):
    """``color_weights`` sets the odds of each target colour (zero: never drawn); bad settings are refused."""
    import hairlib

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    asked = []
    embed = world.clip.embed_text_raw
    monkeypatch.setattr(world.clip, "embed_text_raw", lambda texts: (asked.append(texts), embed(texts))[1])
    _, colors = H.hairclip_vocab(world)
    weights = {c: 0.0 for c in colors} | {"white": 1.0}
    cfg = H.HairCLIPConfig(steps=4, batch=3, log_every=1, ckpt_every=10, p_hairstyle=0, p_color=1.0, p_both=0,
                           p_color_text=1.0, color_weights=weights)
    H.train_hairclip(world, cfg, tmp_path / "a", progress=False)
    drawn = [t for texts in asked if isinstance(texts, list) for t in texts]
    assert len(drawn) == 4 * 3 and set(drawn) == {H.color_text("white")}
    with pytest.raises(ValueError, match="outside the vocabulary"):
        H.train_hairclip(world, H.HairCLIPConfig(steps=1, color_weights={"plaid": 1.0}), tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="non-negative"):
        H.HairCLIPConfig(color_weights={"white": -1.0})


def test_fine_tuning_with_augmented_views_starts_from_the_init_and_resumes(tiny_weights, tmp_path):
    import hairlib
    from hairlib.nets.hair_mapper import HairMapper

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    G = world.generator
    torch.manual_seed(5)
    init = HairMapper(G.num_ws, G.style_dim, world.clip.embed_dim)
    cfg = H.HairCLIPConfig(steps=6, batch=2, ckpt_every=3, augment=3, p_hairstyle_text=1.0, p_color_text=1.0)
    zero = H.train_hairclip(world, cfg, tmp_path / "z", progress=False, init=init, steps=0)
    assert all(torch.equal(a, b) for a, b in zip(zero.state_dict().values(), init.state_dict().values()))
    full = H.train_hairclip(world, cfg, tmp_path / "a", progress=False, init=init)
    assert any(not torch.equal(a, b) for a, b in zip(full.state_dict().values(), init.state_dict().values()))
    H.train_hairclip(world, cfg, tmp_path / "b", progress=False, init=init, steps=4)
    resumed = H.train_hairclip(world, cfg, tmp_path / "b", progress=False, init=init)
    for (k, v), v2 in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v, v2, atol=1e-6), k  # the views are drawn from the step: resumed exactly
    with pytest.raises(ValueError, match="init mapper"):
        H.train_hairclip(world, cfg, tmp_path / "c", progress=False, init=HairMapper(G.num_ws, G.style_dim, 7))


def test_cli_hairclip_train_and_edit(tiny_weights, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from hairlib import cli
    from hairlib.mini import render as R

    monkeypatch.setenv("HAIRLIB_MINI_WEIGHTS", str(tiny_weights))
    out = tmp_path / "edit.png"
    assert cli.main(["edit", "--method", "hairclip", "--out", str(out)]) == 2
    assert "needs --hairstyle" in capsys.readouterr().err
    assert cli.main(["edit", "--method", "hairclip", "--text", "afro", "--out", str(out)]) == 2
    assert "not --text" in capsys.readouterr().err
    assert cli.main(["edit", "--method", "hairclip", "--color", "red hair", "--color-ref", "x.png", "--out", str(out)]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli.main(["edit", "--method", "global", "--text", "x", "--color", "red hair", "--out", str(out)]) == 2
    assert "are for --method hairclip" in capsys.readouterr().err
    assert cli.main(["edit", "--method", "hairclip", "--color", "red hair", "--out", str(out)]) == 2
    assert "hairlib train hairclip" in capsys.readouterr().err  # the tiny world ships no mapper
    assert not out.exists()
    assert cli.main(["train", "hairclip", "--steps", "2", "--batch", "1", "--out", str(tmp_path / "runs")]) == 0
    ckpt = tmp_path / "runs" / "mini" / "hairclip.safetensors"
    assert ckpt.exists()
    ref = tmp_path / "ref.png"
    Image.fromarray(R.render_batch([R.sample_params(0, hair_color="purple")])[0][0]).save(ref)
    assert cli.main(["edit", "--method", "hairclip", "--hairstyle", "afro hairstyle", "--color-ref", str(ref),
                     "--mapper", str(ckpt), "--n", "2", "--out", str(out)]) == 0
    assert out.exists()


def test_mask_reference_sets_how_training_and_editing_read_a_reference(tiny_weights, tmp_path, monkeypatch):
    """``mask_reference=False`` trains on whole references' image embeddings; the mapper keeps the
    setting in its file, and ``reference="image"`` edits read references the same way."""
    import hairlib

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    seen = []
    embed = world.clip.embed_image_raw
    monkeypatch.setattr(world.clip, "embed_image_raw", lambda x: (seen.append(x.clone()), embed(x))[1])
    cfg = H.HairCLIPConfig(steps=2, batch=2, log_every=1, ckpt_every=10, p_hairstyle=0, p_color=1.0, p_both=0,
                           p_color_text=0.0, mask_reference=False)
    m = H.train_hairclip(world, cfg, tmp_path / "a", progress=False)
    # whole renders: the background outside the hair is not blacked out (masked ones are 0 there)
    assert len(seen) == 2 and all((x == 0).float().mean() < 0.5 for x in seen)
    back = H.load_hair_mapper(H.save_hair_mapper(m, tmp_path / "m.safetensors"))
    assert back.mask_reference is False and HairMapper(10, 16, 8).mask_reference is True
    refs, hair = render_references("color", ["red", "blue"], np.random.default_rng(0))
    w = world.sample(2, seed=1)
    for mapper, whole in ((back, True), (H.load_hair_mapper(H.save_hair_mapper(HairMapper(
            back.num_ws, back.dim, back.embed_dim), tmp_path / "p.safetensors")), False)):
        seen.clear()
        hairlib.edit(world, w, method="hairclip", color=refs, reference="image", mapper=mapper)
        masked = world.masks(world.align(refs))["hair"] * world.align(refs)
        assert len(seen) == 1 and torch.allclose(seen[0], masked) is not whole


def test_the_reading_losses_run_on_their_own_kind_of_condition(tiny_weights, tmp_path):
    """``image_reading_lambda`` adds CLIP's zero-shot reading of the edit against the reference's
    for reference conditions (logged as read_hairstyle / read_color), ``text_reading_lambda``
    against the prompt's own index for text ones (read_text_*); each only when its weight is set."""
    import json

    import hairlib

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    for p_text, text_lambda in ((0.0, 0.05), (1.0, 0.0), (1.0, 0.05)):
        run = tmp_path / f"{p_text}_{text_lambda}"
        cfg = H.HairCLIPConfig(steps=3, batch=2, log_every=1, ckpt_every=10, p_hairstyle=0, p_color=0, p_both=1.0,
                               p_hairstyle_text=p_text, p_color_text=p_text, image_reading_lambda=0.05,
                               text_reading_lambda=text_lambda)
        H.train_hairclip(world, cfg, run, progress=False)
        logs = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
        image, text = p_text == 0.0, p_text == 1.0 and text_lambda > 0
        assert all(("read_hairstyle" in r and "read_color" in r and r["read_color"] > 0) is image for r in logs)
        assert all(("read_text_hairstyle" in r and r["read_text_color"] > 0 if text else "read_text_color" not in r)
                   for r in logs)
