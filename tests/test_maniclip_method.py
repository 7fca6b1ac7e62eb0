"""ManiCLIP as a method: the authors' losses and sentences, training (resumable), save/load, the
edit's truncation bookkeeping, the CLI, and the held-out sentence evaluation."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import hairlib
from hairlib.cli import main
from hairlib.evaluate import _sentence_scores, eval_sentences
from hairlib.methods import maniclip as M
from hairlib.mini.captions import HELDOUT_TEMPLATES  # noqa: F401  (the held-out split exists)
from hairlib.mini.vocab import GROUPS, LABEL_NAMES
from hairlib.nets.maniclip import ManiCLIPEditor
from hairlib.prompts import MANICLIP_GROUPS


@pytest.fixture(scope="module")
def world(tiny_weights):
    return hairlib.load_world("mini", weights_dir=tiny_weights)


def test_entropy_is_the_authors_min_max_entropy_and_favours_sparse_offsets():
    offset = torch.tensor([[[0.0, 1.0], [2.0, -4.0]]])
    p = torch.tensor([0.0, 0.25, 0.5, 1.0]) + 1e-7
    assert M.entropy_loss(offset, scale=1.0).item() == pytest.approx(-(p * p.log()).sum().item(), rel=1e-5)
    dense = torch.randn(4, 10, 16).abs() + 1
    sparse = torch.zeros(4, 10, 16)
    sparse[:, 0, :2] = torch.randn(4, 2)
    sparse[:, 0, 2] = 3.0
    assert M.entropy_loss(sparse).item() < M.entropy_loss(dense).item()


def test_part_sentences_take_up_to_three_attributes_of_one_group():
    rng = np.random.default_rng(0)
    groups = {a: g for g, attrs in MANICLIP_GROUPS.items() for a in attrs}
    subjects = set()
    for _ in range(200):
        text, labels = M.part_sentence(rng, 3)
        subject, rest = text.split(" has ", 1)
        subjects.add(subject)
        attrs = rest.split(", ")
        assert 1 <= len(attrs) <= 3 and len({groups[a] for a in attrs}) == 1
        assert {k for k in labels if k != "male"} == set(attrs)
        assert ("male" in labels) == (subject != "the person")
    assert subjects == set(M.PRONOUNS)
    assert sum(len(v) for v in MANICLIP_GROUPS.values()) == 39  # CelebA's 40 attributes but "male"


def test_mini_world_sentences_are_group_sampled(world):
    cfg = M.ManiCLIPTrainConfig()
    draw = M.sentence_source(world, cfg)
    rng = np.random.default_rng(1)
    for _ in range(50):
        text, labels = draw(rng)
        stated = [k for k in labels if k != "gender"]
        assert len({g for g, attrs in GROUPS.items() for k in stated if k in attrs}) == 1, text
        assert text.split(" has ")[0] in ("she", "he", "the person")
    whole = M.sentence_source(world, M.ManiCLIPTrainConfig(decouple=False))
    text, labels = whole(rng)
    assert set(labels) == set(LABEL_NAMES)  # a caption of one whole face


def test_without_a_world_sentence_source_whole_captions_are_refused(world):
    class NoText:
        sentences = None
    with pytest.raises(ValueError, match="decouple=True"):
        M.sentence_source(NoText(), M.ManiCLIPTrainConfig(decouple=False))


def test_training_runs_resumes_and_round_trips(world, tmp_path):
    cfg = M.ManiCLIPTrainConfig(steps=2, batch=2, log_every=1, ckpt_every=1, layers=1, heads=2)
    editor = M.train_maniclip(world, cfg, tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    for term in ("clip", "w_norm", "id", "face_color", "entropy", "background"):
        assert np.isfinite(log[-1][term]), term
    again = M.train_maniclip(world, cfg, tmp_path / "run", progress=False, steps=3)  # resumes at step 2
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 3
    path = M.save_maniclip(again, tmp_path / "ed.safetensors")
    loaded = M.load_maniclip_editor(path)
    w, e = torch.randn(3, 16), torch.randn(3, 16)
    assert torch.equal(loaded(w, e), again(w, e)) and loaded.truncation == 0.7
    assert editor.config.num_ws == world.generator.num_ws and editor.config.ff == 64


def test_a_zero_offset_leaves_the_face_and_truncation_is_undone(world):
    editor = ManiCLIPEditor(M.editor_config(world, heads=2, layers=1))
    torch.nn.init.zeros_(editor.decoder.norm.weight)
    torch.nn.init.zeros_(editor.decoder.norm.bias)
    w = world.sample(3, seed=0, truncation=0.7)
    r = hairlib.edit(world, w, "she has red hair", method="maniclip", editor=editor)
    assert torch.allclose(r.latents, w) and r.info["truncation"] == 0.7
    G = world.generator
    w_in = M.editor_input(world, w, 0.7)  # the untruncated w the generator would truncate back
    assert torch.allclose(G.truncate(G.broadcast(w_in), 0.7), w, atol=1e-5)


def test_the_offset_is_applied_at_the_training_truncation(world):
    editor = ManiCLIPEditor(M.editor_config(world, heads=2, layers=1)).eval()
    editor.truncation = 0.5
    w = world.sample(2, seed=1)
    r = hairlib.edit(world, w, "he has a beard", method="maniclip", editor=editor, strength=2.0)
    with torch.no_grad():
        offset = editor(M.editor_input(world, w, 0.7), world.clip.embed_text_raw("he has a beard"))
    assert torch.allclose(r.latents, w + 2.0 * 0.5 * offset, atol=1e-5)


def test_an_editor_of_another_size_is_refused(world):
    from hairlib.nets.maniclip import ManiCLIPConfig
    with pytest.raises(ValueError, match="256 px generator"):
        hairlib.edit(world, world.sample(1), "she has bangs", method="maniclip",
                     editor=ManiCLIPEditor(ManiCLIPConfig(layers=1)))
    with pytest.raises(ValueError, match="no trained ManiCLIP editor"):
        hairlib.edit(world, world.sample(1), "she has bangs", method="maniclip")


def test_heldout_sentences_state_k_groups_in_heldout_phrasings():
    for k in (1, 2, 3, 4):
        for text, labels in eval_sentences(k, 6):
            stated = [a for a in labels if a != "gender"]
            assert len(stated) == k and len({g for g, attrs in GROUPS.items() for a in stated if a in attrs}) == k
    assert eval_sentences(2, 4) == eval_sentences(2, 4)  # the same sentences for every method


def test_sentence_scores_count_stated_and_unstated_attributes():
    before = {n: torch.zeros(2, dtype=torch.long) for n in LABEL_NAMES}
    after = {n: torch.zeros(2, dtype=torch.long) for n in LABEL_NAMES}
    after["eyeglasses"][0] = 1  # face 0 got its glasses
    after["smiling"][1] = 1  # face 1 did not, and smiles too
    s = _sentence_scores(None, before, after, [{"eyeglasses": 1}, {"eyeglasses": 1}])
    assert s["reached"] == 0.5
    unstated = len(LABEL_NAMES) - 1
    assert s["kept"] == pytest.approx((2 * unstated - 1) / (2 * unstated))


def test_cli_trains_edits_and_evaluates_sentences(world, tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HAIRLIB_MINI_WEIGHTS", str(tiny_weights))
    run = tmp_path / "runs"
    assert main(["train", "maniclip", "--steps", "1", "--batch", "2", "--out", str(run)]) == 0
    editor = run / "mini" / "maniclip.safetensors"
    assert editor.is_file()
    out = tmp_path / "edit.png"
    assert main(["edit", "--method", "maniclip", "--text", "she has blond hair, a smile", "--editor", str(editor),
                 "--n", "2", "--out", str(out)]) == 0
    assert out.is_file()
    assert main(["eval", "--sentences", "--method", "maniclip", "--editor", str(editor), "--n", "8",
                 "--out", str(tmp_path / "eval")]) == 0
    rows = (tmp_path / "eval" / "sentences-mini-maniclip.csv").read_text().splitlines()
    assert rows[0].startswith("method,attributes") and len(rows) == 5
    assert main(["edit", "--method", "maniclip", "--text", "x", "--editor", str(tmp_path / "none.safetensors")]) == 2
    assert main(["edit", "--method", "optimize", "--text", "x", "--editor", str(editor)]) == 2
    assert "--editor is for --method maniclip" in capsys.readouterr().err


def test_latent_spread_counts_the_entries_an_edit_moves():
    from hairlib.evaluate import latent_spread
    one = torch.zeros(1, 10, 16)
    one[0, 3, 5] = 2.0
    dense = torch.ones(1, 10, 16)
    assert latent_spread(one).item() == pytest.approx(1 / 160)
    assert latent_spread(dense).item() == pytest.approx(144 / 160)  # 90 % of equal entries: 144 of them
    assert latent_spread(torch.zeros(2, 10, 16)).tolist() == [0.0, 0.0]


def test_the_recipe_trains_scores_and_keeps_an_ablation_editor_in_its_run(tiny_weights, tmp_path, monkeypatch):
    from hairlib.mini import train_maniclip as recipe
    monkeypatch.setenv("HAIRLIB_MINI_WEIGHTS", str(tiny_weights))
    monkeypatch.setattr(recipe, "STAGES", {k: replace(v, batch=2, layers=1) for k, v in recipe.STAGES.items()})
    out = tmp_path / "run"
    assert recipe.main(["--stage", "no-entropy", "--steps", "1", "--out", str(out)]) == 0
    editor = M.load_maniclip_editor(out / "maniclip.safetensors")
    assert editor.train_config["entropy_lambda"] == 0.0
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert set(last["eval"]) >= {"reached", "kept", "identity", "spread"}
    assert not (tiny_weights / "maniclip.safetensors").exists()  # an ablation never ships


def test_authors_masks_are_their_bisenet_with_their_resizing(tmp_path, monkeypatch):
    from hairlib import weights
    from hairlib.nets.bisenet import BiSeNet
    torch.manual_seed(0)
    path = tmp_path / "79999_iter.pth"
    torch.save(BiSeNet().state_dict(), path)
    asked = []
    monkeypatch.setattr(weights, "fetch", lambda name, **kw: asked.append(name) or path)
    masks = M.authors_masks()(torch.rand(1, 3, 256, 256) * 2 - 1)
    assert asked == ["face-parser-bisenet"] and masks["hair"].shape == (1, 1, 256, 256)
    values = torch.unique(torch.cat([masks["hair"], masks["face"]]))
    assert set(values.tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0}  # 512 px labels averaged over 2 x 2 blocks


def test_background_is_where_no_mask_has_any_hair_or_face(world):
    cfg = M.ManiCLIPTrainConfig()
    x, x_hat = torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)
    hair, face = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    hair[..., :4, :] = 0.25  # a trace of hair (the authors' averaged masks) is not background
    face[..., 4:8, :] = 1.0
    none = {"hair": torch.zeros(1, 1, 16, 16), "face": torch.zeros(1, 1, 16, 16)}
    terms = M.maniclip_losses(world, cfg, x, x_hat, torch.zeros(1, 2, 16), world.clip.embed_text_raw("a face"),
                              {"hair": hair, "face": face}, world.identity(x), masks=lambda images: none)
    assert terms["background"][1].item() == pytest.approx(0.5)  # the lower half differs by 1 on every channel


def test_hair_sentences_are_edited_by_hairclip_too(world):
    from hairlib.evaluate import _hairclip_conditions, evaluate_sentences
    from hairlib.nets.hair_mapper import HairMapper
    for k in (1, 2):
        for text, labels in eval_sentences(k, 6, hair=True):
            assert set(labels) - {"gender"} <= {"hair_color", "hairstyle"} and len(set(labels) - {"gender"}) == k
    assert _hairclip_conditions({"hairstyle": 3, "hair_color": 3, "gender": 0}) == {"hairstyle": "afro hairstyle",
                                                                                    "color": "red hair"}
    mapper = HairMapper(world.generator.num_ws, world.generator.style_dim, 16)
    rows = evaluate_sentences(world, "hairclip", n=8, ks=(1, 2), hair=True, mapper=mapper)
    assert [r["attributes"] for r in rows] == [1, 2] and all(0 <= r["reached"] <= 1 for r in rows)
    with pytest.raises(ValueError, match="1 or 2 attributes"):
        evaluate_sentences(world, "hairclip", n=8, ks=(3,), hair=True, mapper=mapper)
