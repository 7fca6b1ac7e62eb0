"""python -m hairlib.mini.eval_stylegan2 on a paired run's state: as it ships (--fit) and from its codes."""
import json
from dataclasses import replace

import pytest
import torch

from hairlib.mini import eval_stylegan2 as E
from hairlib.mini import train_stylegan2 as T


@pytest.fixture(scope="module")
def paired_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("paired") / "run"
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:  # the reference ops: no CPU kernels compiled for 2 steps
        mp.setenv("HAIRLIB_OPS", "ref")
        T.train_paired(run, replace(T.PAIRED, steps=2, batch=4), progress=False, execution="reference")
    return run


def test_fit_judges_the_generator_as_it_ships(paired_run, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "MAPPING_FIT", dict(T.MAPPING_FIT, steps=3, bank=256, batch=64))
    monkeypatch.setenv("HAIRLIB_OPS", "ref")
    assert E.main(["--state", str(paired_run / "state.pt"), "--fit", "--n", "16", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "mini_stylegan2_eval.json").read_text())
    assert res["driven_by"] == "fitted mapping" and res["step"] == 2
    assert res["mapping_fit"]["steps"] == 3 and "r2" in res["mapping_fit"]
    assert 0 < res["sharpness_ratio"] and set(res["coverage"]) >= {"hairstyle=ponytail", "hair_color=red"}
    assert (tmp_path / "mini_stylegan2_samples.png").exists()


def test_codes_and_fit_need_a_run_state(paired_run, tmp_path):
    for argv in (["--fit"], ["--codes"], ["--state", str(paired_run / "state.pt"), "--fit", "--codes"]):
        with pytest.raises(SystemExit) as e:
            E.main(argv + ["--out", str(tmp_path)])
        assert e.value.code == 2
    other = tmp_path / "copy.pt"
    other.write_bytes((paired_run / "state.pt").read_bytes())
    with pytest.raises(SystemExit) as e:
        E.main(["--state", str(other), "--fit", "--out", str(tmp_path)])
    assert e.value.code == 2
