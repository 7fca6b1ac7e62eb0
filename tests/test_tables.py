"""The papers' tables (notebook 07) from evaluation rows: the right rows, means and paper columns."""
import json

import pytest
import torch

from hairlib import tables as T
from hairlib.evaluate import _sentence_scores

pd = pytest.importorskip("pandas")


def _row(method, task, success, identity, psnr=30.0, seconds=0.01, **extra):
    return {"method": method, "task": task, "n": 4, "success": success, "preserved": 0.9, "identity": identity,
            "psnr_bg": psnr, "ssim_bg": 0.9, "seconds": seconds, **extra}


RUNS = {"optimize": [_row("optimize", "blond", 1.0, 0.8, seconds=7.0), _row("optimize", "smiling", 0.5, 0.6, seconds=7.0)],
        "global": [_row("global", "blond", 0.5, 0.7)],
        "mapper": [_row("mapper", "afro", 0.75, 0.9)],
        "hairclip": [_row("hairclip", "blond", 1.0, 0.85, psnr=27.0), _row("hairclip", "afro", 0.5, 0.75, psnr=25.0),
                     {**_row("hairclip", "color from reference (image)", 0.9, 0.8), "match": 0.9}]}


def test_styleclip_table_puts_the_papers_times_beside_ours():
    df = T.styleclip_table(RUNS, {"global": 5400.0, "mapper": 900.0})
    assert list(df.index) == ["latent optimisation", "global directions", "latent mapper"]
    assert df.loc["latent optimisation", "time / edit (paper, GPU)"] == "98.0 s"
    assert df.loc["latent optimisation", "time / edit (ours)"] == "7.0 s"
    assert df.loc["latent mapper", "time / edit (paper, GPU)"] == "75 ms"
    assert df.loc["global directions", "training or pre-processing (ours)"] == "1.5 h"
    assert df.loc["latent mapper", "training or pre-processing (ours)"] == "15.0 min"
    assert df.loc["latent optimisation", "success"] == pytest.approx(0.75)
    assert df.loc["latent optimisation", "identity"] == pytest.approx(0.7)


def test_hairclip_table_compares_the_same_hair_edits():
    df = T.hairclip_table(RUNS)
    assert df.loc["HairCLIP", "edits"] == "blond, afro"  # reference rows are another table
    assert df.loc["HairCLIP", "PSNR outside hair"] == pytest.approx(26.0)
    assert df.loc["latent optimisation", "edits"] == "blond"  # smiling is not a hair edit
    assert df.loc["latent mapper", "accuracy"] == pytest.approx(0.75)


def test_maniclip_table_reads_rows_and_their_csv_text():
    rows = {"maniclip": [{"method": "maniclip", "attributes": "3", "n": "64", "reached": "0.5", "kept": "0.9",
                          "accuracy": "0.8", "identity": "0.25", "psnr_bg": "25", "spread": "0.4", "kid": "0.1",
                          "seconds": "0.02"}],
            "global": [{"method": "global", "attributes": 3, "n": 64, "reached": 0.4, "kept": 0.95, "identity": 0.6,
                        "psnr_bg": 40.0, "spread": float("nan"), "seconds": 0.02}]}  # written before accuracy/kid
    df = T.maniclip_table(rows)
    assert df.loc[("ManiCLIP", 3), "identity (x100)"] == pytest.approx(25.0)
    assert df.loc[("ManiCLIP", 3), "accuracy"] == pytest.approx(0.8)
    assert df.loc[("global directions", 3), "accuracy"] != df.loc[("global directions", 3), "accuracy"]  # NaN


def test_truth_table_adds_each_methods_mean():
    rows = [{"method": "inversion", "task": "-", "n": 4, "psnr_truth": 30.0, "psnr_keep": 30.0},
            {"method": "hairclip", "task": "blond", "n": 4, "psnr_truth": 20.0, "psnr_keep": 28.0},
            {"method": "hairclip", "task": "afro", "n": 4, "psnr_truth": 18.0, "psnr_keep": 26.0}]
    df = T.truth_table(rows)
    assert df.loc[("HairCLIP", "mean"), "psnr_keep"] == pytest.approx(27.0)
    assert ("inversion (no edit)", "mean") not in df.index


def test_training_seconds_come_from_the_shipped_lineage(tmp_path):
    class World:
        mappers = {}
    for name, secs in (("a", 100.0), ("b", 300.0)):
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
        (tmp_path / f"{name}.json").write_text(json.dumps({"lineage": {"seconds": secs}}))
        World.mappers[name] = tmp_path / f"{name}.safetensors"

    class Directions:
        meta = {"seconds_stats": 2.0, "seconds_relevance": 40.0}
    assert T.training_seconds(World(), Directions()) == {"global": 42.0, "mapper": 200.0}


def test_attribute_accuracy_counts_stated_and_unstated_together():
    from hairlib.mini.vocab import LABEL_NAMES

    before = {k: torch.zeros(2, dtype=torch.long) for k in LABEL_NAMES}
    after = {k: v.clone() for k, v in before.items()}
    after["eyeglasses"][:] = 1  # stated on both faces: reached
    after["smiling"][0] = 1  # unstated: changed on one face
    s = _sentence_scores(None, before, after, [{"eyeglasses": 1}, {"eyeglasses": 1}])
    unstated = 2 * (len(LABEL_NAMES) - 1)
    assert s["reached"] == 1.0 and s["kept"] == pytest.approx(1 - 1 / unstated)
    assert s["accuracy"] == pytest.approx(1 - 1 / (unstated + 2))
