"""StyleCLIP latent mapper: the authors' key layout and maths, training, save/load, editing."""
import math

import pytest
import torch

import hairlib
from hairlib.edit.mapper import load_mapper, mapper_edit, save_mapper, slug, train_mapper
from hairlib.nets.mappers import LevelsMapper, group_slices


@pytest.fixture(scope="module")
def world(tiny_weights):
    return hairlib.load_world("mini", weights_dir=tiny_weights)


def test_authors_key_layout_and_groups():
    m = LevelsMapper(18, 512, ("coarse", "medium"))
    keys = sorted(m.state_dict())
    assert keys == sorted(f"{g}_mapping.mapping.{i}.{p}" for g in ("course", "medium") for i in range(1, 5)
                          for p in ("weight", "bias"))
    assert m.state_dict()["course_mapping.mapping.1.weight"].shape == (512, 512)
    assert group_slices(18) == {"coarse": slice(0, 4), "medium": slice(4, 8), "fine": slice(8, 18)}
    assert group_slices(10)["fine"] == slice(8, 10)
    w = torch.randn(2, 18, 512)
    out = m(w)
    assert torch.equal(out[:, 8:], torch.zeros(2, 10, 512))  # no fine mapper: zero offset


def test_submapper_maths_follow_the_authors():
    torch.manual_seed(0)
    m = LevelsMapper(4, 8, ("coarse",))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    x = torch.randn(3, 4, 8)
    # PixelNorm over dim 1 (the group's rows), then EqualLinear(lr_mul 0.01) + bias on the last dim
    h = x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, 5):
        lin = m.course_mapping.mapping[i]
        h = torch.nn.functional.leaky_relu(h @ (lin.weight * 0.01 / math.sqrt(8)).t() + lin.bias * 0.01, 0.2) * math.sqrt(2)
    assert torch.allclose(m(x), h, atol=1e-6)


def test_loads_authors_checkpoint_format(tmp_path):
    m = LevelsMapper(18, 512, ("coarse", "medium"))
    sd = {f"mapper.{k}": v for k, v in m.state_dict().items()}
    sd["decoder.style.1.weight"] = torch.zeros(512, 512)  # the generator rides along in their files
    torch.save({"state_dict": sd, "opts": {"description": "afro", "no_fine_mapper": True}}, tmp_path / "afro.pt")
    back = load_mapper(tmp_path / "afro.pt")
    assert back.groups == ("coarse", "medium") and back.text == "afro"
    w = torch.randn(1, 18, 512)
    assert torch.allclose(back(w), m(w))
    torch.save({"state_dict": {"mapper.course_mapping.mapping.1.weight": torch.zeros(3, 3)}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_mapper(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        load_mapper(tmp_path / "none.pt")


def test_train_save_load_edit(world, tmp_path):
    torch.manual_seed(0)
    m = train_mapper(world, "red hair", steps=30, batch=4, lr=0.5, out_dir=tmp_path / "run", progress=False)
    from hairlib.train.checkpoint import read_log
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert log and {"clip", "l2", "id"} <= set(log[-1])
    w = world.sample(3, seed=5)
    path = save_mapper(m, tmp_path / f"{slug('red hair')}.safetensors")
    back = load_mapper(path, num_ws=world.generator.num_ws)
    assert torch.allclose(back(w), m(w)) and back.text == "red hair"
    r = mapper_edit(world, w, "red hair", mapper=path)
    assert torch.allclose(r.latents, w + 0.1 * m(w), atol=1e-6)
    # the CLIP loss the mapper was trained on went down on fresh latents
    from hairlib.nets.clip import clip_loss
    txt = world.clip.encode_text("red hair")
    assert clip_loss(world.clip, r.images, txt).mean() < clip_loss(world.clip, r.source_images, txt).mean()
    # resuming a finished run trains nothing more
    m2 = train_mapper(world, "red hair", steps=30, batch=4, out_dir=tmp_path / "run", progress=False)
    assert torch.allclose(m2(w), m(w))
    world.defaults["mappers"] = {"red hair": path}
    assert hairlib.edit(world, w, "red hair", method="mapper").method == "mapper"
    with pytest.raises(ValueError, match="no mapper for 'afro'"):
        hairlib.edit(world, w, "afro", method="mapper")
    with pytest.raises(ValueError, match="edits W\\+"):
        mapper_edit(world, w, "x", mapper=LevelsMapper(18, 512))


def test_training_with_augmented_views_resumes_exactly(world, tmp_path):
    kw = dict(steps=6, batch=2, augment=3, ckpt_every=3, progress=False)
    full = train_mapper(world, "red hair", out_dir=tmp_path / "a", **kw)
    train_mapper(world, "red hair", out_dir=tmp_path / "b", **{**kw, "steps": 3})  # "interrupted"
    resumed = train_mapper(world, "red hair", out_dir=tmp_path / "b", **kw)
    w = world.sample(2, seed=4)
    assert torch.allclose(full(w), resumed(w), atol=1e-6)
    plain = train_mapper(world, "red hair", out_dir=tmp_path / "c", **{**kw, "augment": 0})
    assert not torch.allclose(full(w), plain(w))  # the views change what is learned
