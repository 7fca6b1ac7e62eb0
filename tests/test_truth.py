"""Truth mode: edits of inverted renders judged against the render of their true answer."""
import math

import numpy as np
import pytest
import torch

import hairlib
from hairlib import cli
from hairlib.evaluate import HAIR_TASKS, evaluate_truth, format_truth_table, truth_of, truth_scores, truth_sources
from hairlib.metrics import ciede2000
from hairlib.mini import render as R

BLOND = next(t for t in HAIR_TASKS if t.name == "blond")
AFRO = next(t for t in HAIR_TASKS if t.name == "afro")


@pytest.mark.parametrize("lab1, lab2, expected", [  # Sharma, Wu and Dalal (2005), table 1
    ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
    ((50, 0, 0), (50, -1, 2), 2.3669),
    ((50, 2.49, -0.001), (50, -2.49, 0.0009), 7.1792),
    ((50, 2.5, 0), (73, 25, -18), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
])
def test_ciede2000_matches_the_published_pairs(lab1, lab2, expected):
    assert float(ciede2000(torch.tensor(lab1), torch.tensor(lab2))) == pytest.approx(expected, abs=1e-4)
    assert float(ciede2000(torch.tensor(lab2), torch.tensor(lab1))) == pytest.approx(expected, abs=1e-4)


def test_the_truth_changes_only_the_hair():
    params = R.sample_params(np.random.default_rng(3), n=6, split="heldout", hat=0, hairstyle="bob cut")
    src_images, src_masks, _ = R.render_batch(params, size=64)
    truth = truth_of(params, AFRO, 64)
    _, truth_masks, labels = R.render_batch([p.replace(hairstyle=R.HAIRSTYLES.index("afro")) for p in params], size=64)
    outside = ~(src_masks["hair"].astype(bool) | truth_masks["hair"].astype(bool))  # [N, H, W]
    src = R.to_tensor(src_images)
    assert torch.equal(truth.permute(0, 2, 3, 1)[torch.from_numpy(outside)], src.permute(0, 2, 3, 1)[torch.from_numpy(outside)])
    assert not torch.equal(truth, src)
    assert (labels["hairstyle"] == R.HAIRSTYLES.index("afro")).all()


@pytest.fixture(scope="module")
def world():
    return hairlib.load_world("mini")


def test_scores_of_the_truth_itself_and_of_no_edit(world):
    params = R.sample_params(np.random.default_rng(5), n=8, split="heldout", hat=0, hairstyle="long straight",
                             hair_color="black")
    src = R.to_tensor(R.render_batch(params, size=64)[0])
    truth = truth_of(params, BLOND, 64)
    perfect = truth_scores(world, src, truth, truth)
    assert perfect["hair_iou"] == 1.0 and perfect["color_de"] == 0.0 and perfect["feat_truth"] < 1e-6
    assert perfect["psnr_truth"] > 100
    assert perfect["psnr_keep"] > 35  # the truth changes only the hair; the parser's masks miss a few edge pixels
    unedited = truth_scores(world, src, src, truth)
    assert unedited["color_de"] > 20  # black is far from blond
    assert unedited["hair_iou"] > 0.8  # the same hair, another colour
    assert unedited["psnr_truth"] < 30 and unedited["psnr_keep"] > 100


def test_a_hairclip_blond_edit_comes_closer_to_the_true_blond(world):
    sources = truth_sources(world, 8)  # held-out renders, inverted once
    rows = evaluate_truth(world, "hairclip", tasks=[BLOND], n=8, batch=8, sources=sources)
    inversion, edit = rows
    assert inversion["method"] == "inversion" and edit["task"] == "blond"
    assert all(math.isfinite(edit[k]) for k in ("psnr_truth", "feat_truth", "hair_iou", "psnr_keep", "identity"))
    assert "| hairclip | blond | 8 |" in format_truth_table(rows)
    # the inversions' hair against the blond truth: the edit must have moved the colour toward it
    params, src, w = sources
    with torch.no_grad():
        recon = world.generate(w).clamp(-1, 1)
    before = truth_scores(world, src, recon, truth_of(params, BLOND, 64))
    assert edit["color_de"] < before["color_de"] - 5


def test_truth_mode_refuses_the_ffhq_world(capsys):
    assert cli.main(["eval", "--truth", "--world", "ffhq", "--out", ""]) == 2
    assert "renderer" in capsys.readouterr().err
