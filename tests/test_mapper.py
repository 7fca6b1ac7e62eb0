"""StyleCLIP latent mapper: the authors' key layout and maths, training, save/load, editing."""
import math

import pytest
import torch

import hairlib
from hairlib.methods.mapper import load_mapper, mapper_edit, save_mapper, slug, train_mapper
from hairlib.nets.mappers import LevelsMapper, group_slices


@pytest.fixture(scope="module")
def world(tiny_weights):
    return hairlib.load_world("mini", weights_dir=tiny_weights)


def _weights_with_a_hair_mapper(tiny_weights, tmp_path, seed, extra, strength=None):
    """A copy of the tiny weights whose ``hairclip.safetensors`` is a fresh HairMapper (``seed``,
    metadata ``extra``, edit strength ``strength``); returns (world, weights folder, mapper file)."""
    import shutil

    from hairlib.methods.hairclip import save_hair_mapper
    from hairlib.nets.hair_mapper import HairMapper

    d = tmp_path / "weights"
    shutil.copytree(tiny_weights, d)
    world = hairlib.load_world("mini", weights_dir=d)
    G = world.generator
    torch.manual_seed(seed)
    m = HairMapper(G.num_ws, G.style_dim, world.clip.embed_dim)
    if strength is not None:
        m.strength = strength
    dest = d / "hairclip.safetensors"
    save_hair_mapper(m, dest, extra=extra)
    return world, d, dest


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
    world.mappers = {"red hair": path}
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


def test_contrast_prompts_add_clips_reading_and_go_into_the_recipe(world, tmp_path, monkeypatch):
    """``contrast_lambda``: CLIP's reading of the edit over the prompt and ``contrast`` (logged as
    ``contrast``), cross-entropy toward the prompt; it changes what is learned, needs contrast
    prompts, and its prompts are kept in the recipe (``to_dict``)."""
    from hairlib.methods.mapper import MapperConfig
    from hairlib.mini import train_mappers as TM
    from hairlib.train.checkpoint import read_log

    asked = []
    encode = world.clip.encode_text
    monkeypatch.setattr(world.clip, "encode_text", lambda t, *a, **k: (asked.append(t), encode(t, *a, **k))[1])
    contrast = TM._contrast("red")
    assert "a photo of a person with blond hair." in contrast and not any("red" in c for c in contrast)
    kw = dict(steps=4, batch=2, log_every=1, progress=False)
    m = train_mapper(world, "a photo of a person with red hair.", out_dir=tmp_path / "a", contrast=contrast,
                     contrast_lambda=0.05, **kw)
    assert ["a photo of a person with red hair.", *contrast] in asked
    log = read_log(tmp_path / "a" / "log.jsonl")
    assert all(r["contrast"] > 0 for r in log)
    plain = train_mapper(world, "a photo of a person with red hair.", out_dir=tmp_path / "b", **kw)
    w = world.sample(2, seed=4)
    assert "contrast" not in read_log(tmp_path / "b" / "log.jsonl")[-1] and not torch.allclose(m(w), plain(w))
    assert MapperConfig(contrast=contrast).to_dict()["contrast"] == list(contrast)
    with pytest.raises(ValueError, match="needs contrast prompts"):
        train_mapper(world, "red hair", out_dir=tmp_path / "c", contrast_lambda=0.1, **kw)
    assert len(TM._contrast("smiling")) == 3 and len(TM._contrast("afro")) == 10


def test_fine_tuning_starts_from_the_init_and_checks_its_shape(world, tmp_path):
    G = world.generator
    torch.manual_seed(3)
    init = LevelsMapper(G.num_ws, G.style_dim, ("coarse", "medium"))
    w = world.sample(3, seed=6)
    path = save_mapper(init, tmp_path / "init.safetensors", text="red hair")
    same = train_mapper(world, "red hair", steps=0, groups=("coarse", "medium"), out_dir=tmp_path / "zero",
                        progress=False, init=path)
    assert torch.allclose(same(w), init(w))  # no step taken: the init itself
    tuned = train_mapper(world, "red hair", steps=3, batch=2, groups=("coarse", "medium"), out_dir=tmp_path / "a",
                         progress=False, init=init)
    fresh = train_mapper(world, "red hair", steps=3, batch=2, groups=("coarse", "medium"), out_dir=tmp_path / "b",
                         progress=False)
    assert (tuned(w) - init(w)).abs().mean() < (fresh(w) - init(w)).abs().mean()
    with pytest.raises(ValueError, match="init mapper"):
        train_mapper(world, "red hair", steps=1, groups=("coarse", "medium", "fine"), out_dir=tmp_path / "c",
                     progress=False, init=init)


def test_retower_fine_tunes_hairclip_under_the_shipped_clip_and_ships_only_a_gain(tiny_weights, tmp_path, monkeypatch):
    """``train_mappers hairclip-retower``: the shipped HairCLIP mapper is fine-tuned (at its shipped
    strength) and replaces the file only if its mean success over the hair tasks and the reference
    matches rises; a mapper already fine-tuned under this CLIP is left alone."""
    import shutil

    from hairlib.mini import train_mappers as TM
    from hairlib.nets.loading import read_with_meta

    world, d, dest = _weights_with_a_hair_mapper(
        tiny_weights, tmp_path, 5, {"recipe": {"steps": 10, "batch": 1, "seed": 0}, "command": "train it"}, strength=0.07)
    monkeypatch.setattr(TM, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(TM, "RETOWER", {"steps": 2, "seed": 3})
    calls = []

    def scores(world, mapper):  # the shipped one is scored first, then the fine-tuned one
        calls.append(mapper)
        return {"afro": {"success": 0.5}, "color from reference (image)": {"success": gains[len(calls) - 1]}}

    monkeypatch.setattr(TM, "_hair_and_reference_scores", scores)
    before = dest.read_bytes()
    gains = [0.4, 0.3]
    assert not TM.train_hair_retower(world, dest=dest) and dest.read_bytes() == before
    assert (tmp_path / "runs" / "hairclip_retower" / "state.pt").exists()
    report = (tmp_path / "runs" / "hairclip_retower" / "report.txt").read_text().splitlines()
    assert report[0] == "afro: success 0.500 -> 0.500" and report[-1].startswith("not shipped")
    assert "shipped 0.450, fine-tuned 0.400" in report[-2]
    shutil.rmtree(tmp_path / "runs")
    calls.clear()
    gains = [0.4, 0.6]
    assert TM.train_hair_retower(world, dest=dest) and dest.read_bytes() != before
    meta = read_with_meta(dest)[1]
    assert meta["stage"] == "retower" and meta["clip"] == read_with_meta(d / "clip.safetensors")[1].get("stage", "")
    assert meta["recipe"]["strength"] == pytest.approx(0.07) and meta["recipe"]["steps"] == 2
    assert meta["scores_before"]["color from reference (image)"]["success"] == 0.4
    assert meta["command"] == "train it && python -m hairlib.mini.train_mappers hairclip-retower"
    assert calls[0] is not calls[1]
    calls.clear()
    assert not TM.train_hair_retower(world, dest=dest) and calls == []  # already done under this CLIP


def test_styleclip_retower_fine_tunes_each_mapper_with_its_recipe_and_the_shipping_gate(tiny_weights, tmp_path,
                                                                                        monkeypatch):
    import shutil

    from hairlib.mini import train_mappers as TM
    from hairlib.nets.loading import read_with_meta

    d = tmp_path / "weights"
    shutil.copytree(tiny_weights, d)
    world = hairlib.load_world("mini", weights_dir=d)
    G = world.generator
    (d / "mappers").mkdir()
    for name in ("afro", "curly"):
        save_mapper(LevelsMapper(G.num_ws, G.style_dim, TM.MAPPERS[name][1]), d / "mappers" / f"{name}.safetensors",
                    text=TM.MAPPERS[name][0], extra={"recipe": {"batch": 1, "id_lambda": 0.3, "augment": 2},
                                                     "command": f"train {name}"})
    before = {n: (d / "mappers" / f"{n}.safetensors").read_bytes() for n in ("afro", "curly")}
    monkeypatch.setattr(TM, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(TM, "RETOWER_MAPPER", {"steps": 2, "seed": 1})
    calls = {}

    def scores(world, method, names, mapper=None):  # first the shipped mapper, then the fine-tuned one
        n = names[0]
        calls[n] = calls.get(n, 0) + 1
        after = {"afro": (0.5, 0.9), "curly": (0.32, 0.9)}[n]  # afro gains 0.2, curly 0.02 < MIN_GAIN
        return {n: dict(zip(("success", "identity"), (0.3, 0.9) if calls[n] == 1 else after))}

    monkeypatch.setattr(TM, "_scores", scores)
    report = TM.train_styleclip_retower(world, weights=d)
    assert {n: r["shipped"] for n, r in report.items()} == {"afro": True, "curly": False}
    assert (d / "mappers" / "curly.safetensors").read_bytes() == before["curly"]
    meta = read_with_meta(d / "mappers" / "afro.safetensors")[1]
    assert meta["stage"] == "retower" and meta["recipe"]["id_lambda"] == 0.3 and meta["recipe"]["augment"] == 2
    assert meta["recipe"]["steps"] == 2 and meta["scores_before"]["afro"]["success"] == 0.3
    assert meta["command"] == "train afro && python -m hairlib.mini.train_mappers styleclip-retower --only afro"
    assert TM.train_styleclip_retower(world, only=["afro"], weights=d) == {}  # already done under this CLIP
    # curly again with another identity weight: its own run folder, the weight in its recipe and command
    seen = []

    def gaining(world, method, names, mapper=None):  # shipped 0.3, fine-tuned 0.6 at identity 0.85
        seen.append(mapper)
        return {"curly": {"success": 0.3 if len(seen) == 1 else 0.6, "identity": 0.9 if len(seen) == 1 else 0.85}}

    monkeypatch.setattr(TM, "_scores", gaining)
    assert TM.train_styleclip_retower(world, only=["curly"], weights=d, id_lambda=0.5)["curly"]["shipped"]
    assert (tmp_path / "runs" / "curly_retower_id0.5" / "report.txt").read_text().startswith(
        "curly: success 0.300 -> 0.600, identity 0.900 -> 0.850: shipped")
    meta = read_with_meta(d / "mappers" / "curly.safetensors")[1]
    assert meta["recipe"]["id_lambda"] == 0.5 and meta["recipe"]["augment"] == 2
    assert meta["command"] == "train curly && python -m hairlib.mini.train_mappers styleclip-retower --only curly --id-lambda 0.5"


def test_a_retrained_mapper_ships_only_on_a_real_gain_at_the_issues_identity(tiny_weights, tmp_path, monkeypatch):
    """``train_styleclip --augment / --id-lambda``: the shipped mapper is replaced only when the new
    one's success beats it by ``MIN_GAIN`` and its identity is >= 0.8; the run folder and the
    recorded command name the changed settings."""
    import shutil

    from hairlib.mini import train_mappers as TM
    from hairlib.nets.loading import read_with_meta

    d = tmp_path / "weights"
    shutil.copytree(tiny_weights, d)
    world = hairlib.load_world("mini", weights_dir=d)
    G = world.generator
    (d / "mappers").mkdir()
    dest = d / "mappers" / "smiling.safetensors"
    save_mapper(LevelsMapper(G.num_ws, G.style_dim, ("coarse", "medium")), dest, text=TM.MAPPERS["smiling"][0],
                extra={"scores": {"smiling": {"success": 0.0, "identity": 0.99}}})
    monkeypatch.setattr(TM, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(TM, "MAPPER_SETTINGS", {"steps": 2, "batch": 1, "seed": 0})
    scored = []  # the shipped mapper is scored afresh on the validation faces, not read from its metadata
    monkeypatch.setattr(TM, "_shipped_scores", lambda world, path, name: scored.append(path) or {
        "success": 0.0, "identity": 0.99})
    for success, identity, ships in [(0.016, 0.995, False), (0.9, 0.47, False), (0.6, 0.85, True)]:
        monkeypatch.setattr(TM, "_scores", lambda world, method, names, **kw: {
            n: {"success": success, "identity": identity} for n in names})
        before = dest.read_bytes()
        TM.train_styleclip(world, ["smiling"], augment=0, weights=d, id_lambda=0.3)
        assert (dest.read_bytes() != before) == ships, (success, identity)
    assert scored == [dest] * 3
    meta = read_with_meta(dest)[1]
    assert meta["command"].endswith("--only smiling --id-lambda 0.3") and meta["recipe"]["id_lambda"] == 0.3
    assert meta["scores_seed"] == TM.VAL_SEED and meta["scores_before"]["smiling"]["success"] == 0.0
    assert (tmp_path / "runs" / "smiling_id0.3" / "state.pt").exists()
    # a shipped mapper below 0.8 already: a gain ships at its identity or above, not below it
    assert TM._gate({"success": 1.0, "identity": 0.78}, {"success": 0.75, "identity": 0.778}) is None
    assert "identity 0.719 < 0.778" in TM._gate({"success": 1.0, "identity": 0.719}, {"success": 0.75, "identity": 0.778})
    assert "< 0.800" in TM._gate({"success": 1.0, "identity": 0.79}, {"success": 0.75, "identity": 0.9})


def test_shipping_decisions_are_scored_on_validation_faces_not_the_eval_table(monkeypatch):
    """``train_mappers`` scores candidates on ``VAL_SEED``'s faces, never on the faces ``hairlib
    eval`` reports (seed 1234), so a table is not chosen on its own faces."""
    import inspect

    from hairlib import evaluate as E
    from hairlib.mini import train_mappers as TM

    assert inspect.signature(E.evaluate).parameters["seed"].default != TM.VAL_SEED
    seen = {}
    monkeypatch.setattr(TM, "evaluate", lambda world, method, tasks, **kw: seen.update(kw) or [])
    TM._scores(None, "mapper", ["smiling"])
    assert seen["seed"] == TM.VAL_SEED and seen["n"] == 64


def test_hairclip_keep_ships_on_success_and_kept_together(tiny_weights, tmp_path, monkeypatch):
    """``train_mappers hairclip-keep``: a fine-tune with oversampled colours
    ships when the mean of success and others kept rises without success falling more than the
    slack; the oversampled colours are scored beside the hair tasks."""
    from hairlib.mini import train_mappers as TM
    from hairlib.nets.loading import read_with_meta

    clip_stage = read_with_meta(tiny_weights / "clip.safetensors")[1].get("stage", "")
    world, d, dest = _weights_with_a_hair_mapper(tiny_weights, tmp_path, 5, {
        # removed fields at their old defaults, as the shipped recipes record them: ignored
        "recipe": {"steps": 10, "batch": 1, "seed": 0, "maintain_shape_lambda": 0.0, "style_weights": None},
        "command": "train it", "stage": "retower", "clip": clip_stage},
        strength=0.07)
    monkeypatch.setattr(TM, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(TM, "HAIRCLIP_KEEP", {**TM.HAIRCLIP_KEEP, "steps": 2})
    seen = []

    def scores(world, mapper, colors):  # the shipped one first, then the fine-tuned one
        seen.append(list(colors))
        s, kept = table[len(seen) - 1]
        return {"blond": {"success": s, "preserved": kept}, "color from reference (image)": {"success": s}}

    monkeypatch.setattr(TM, "_hair_and_reference_scores", scores)
    before = dest.read_bytes()
    table = [(0.80, 0.80), (0.75, 0.95)]  # kept far better, success 5 points worse: not shipped
    assert not TM.train_hair_keep(world, dest=dest) and dest.read_bytes() == before
    assert seen[0] == sorted(TM.HAIRCLIP_KEEP["color_weights"])
    report = (tmp_path / "runs" / "hairclip_keep" / "report.txt").read_text().splitlines()
    assert report[0] == "blond: success 0.800 -> 0.750, preserved 0.800 -> 0.950"
    assert "mean others kept: shipped 0.800, fine-tuned 0.950" in report and report[-1].startswith("not shipped")
    seen.clear()
    table = [(0.80, 0.80), (0.795, 0.85)]  # within the slack, kept up: shipped
    assert TM.train_hair_keep(world, dest=dest, color_weights={"white": 3.0})
    meta = read_with_meta(dest)[1]
    assert seen[0] == ["white"] and meta["stage"] == "keep"
    assert "maintain_shape_lambda" not in meta["recipe"] and meta["recipe"]["color_weights"] == {"white": 3.0}
    assert meta["recipe"]["strength"] == pytest.approx(0.07)
    assert meta["command"] == "train it && python -m hairlib.mini.train_mappers hairclip-keep --oversample white=3"
    assert meta["clip"] == clip_stage and meta["init_stage"] == "retower"
    seen.clear()  # fine-tuned under this CLIP already: hairclip-retower leaves it alone
    assert not TM.train_hair_retower(world, dest=dest) and seen == []
    table = [(0.80, 0.80), (0.85, 0.85)]
    seen.clear()
    assert TM.train_hair_keep(world, dest=dest, id_lambda=0.6)  # another identity weight, its own folder
    meta = read_with_meta(dest)[1]
    assert meta["recipe"]["id_lambda"] == 0.6 and meta["command"].endswith("hairclip-keep --id-lambda 0.6")
    assert (tmp_path / "runs" / "hairclip_keep_id0.6" / "report.txt").exists()
    assert (tmp_path / "runs" / "hairclip_keep_white" / "report.txt").read_text().splitlines()[-1] == "shipped"


def test_recorded_hairclip_recipes_drop_removed_fields_at_their_old_defaults():
    """The shipped HairCLIP mapper's recipe still builds a HairCLIPConfig; a recipe that set a removed
    option to anything but its old default is refused, not silently trained without it."""
    from hairlib.methods.hairclip import HairCLIPConfig
    from hairlib.mini import train_mappers as TM
    from hairlib.nets.loading import read_with_meta

    meta = read_with_meta(TM.WEIGHTS_DIR / "hairclip.safetensors")[1]
    recipe = TM._hairclip_recipe(meta)
    assert not set(TM.REMOVED_HAIRCLIP) & set(recipe)
    assert HairCLIPConfig(**recipe).color_weights == meta["recipe"]["color_weights"]
    with pytest.raises(ValueError, match="maintain_shape_lambda"):
        TM._hairclip_recipe({"recipe": {"maintain_shape_lambda": 2.0}})
    with pytest.raises(ValueError, match="style_weights"):
        TM._hairclip_recipe({"recipe": {"style_weights": {"bun": 2.0}}})
