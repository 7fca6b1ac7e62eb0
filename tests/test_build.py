"""Every shipped mini network has one replayable build, from named parents, recorded as data."""
import functools
import json
from dataclasses import replace

import pytest
import torch

from hairlib.mini import build as B
from hairlib.mini.world import WEIGHTS_DIR


def _meta(rel, root=WEIGHTS_DIR):
    return json.loads((root / rel).with_suffix(".json").read_text())


def test_every_shipped_network_has_a_build_and_its_lineage():
    shipped = {str(p.relative_to(WEIGHTS_DIR)) for p in WEIGHTS_DIR.rglob("*.safetensors")}
    built = {f for b in B.builds().values() for f in b.files}
    assert shipped <= built, f"no build for {sorted(shipped - built)}"
    for b in B.builds().values():
        for rel in b.files:
            lineage = _meta(rel)["lineage"]
            assert lineage["build"] == b.name
            if not lineage["exact"]:  # shipped before builds existed: the commands that made it
                assert lineage["made_by"]
                continue
            assert lineage["config"] == B._plain(b.config), f"{rel}: the build's config is not the one that shipped"
            for parent, sha in lineage["parents"].items():
                if parent != b.name:  # a fine-tune's parent is the file it replaced
                    assert sha == _meta(f"{parent}.safetensors")["sha256"], \
                        f"{rel} was built on another {parent} than the one shipped beside it"


def test_parents_come_from_the_staging_world_first(tmp_path):
    staged = tmp_path / "weights"
    staged.mkdir()
    (staged / "clip.safetensors").write_bytes(b"staged")
    view = B.parents_dir(tmp_path, "x")
    assert (view / "clip.safetensors").read_bytes() == b"staged"
    assert (view / "stylegan2.safetensors").resolve() == (WEIGHTS_DIR / "stylegan2.safetensors").resolve()
    assert (view / "mappers" / "afro.safetensors").exists()


def _load(rel, path, world):
    from hairlib.methods.hairclip import load_hair_mapper
    from hairlib.methods.maniclip import load_maniclip_editor
    from hairlib.methods.mapper import load_mapper

    if rel.startswith("mappers/"):
        return load_mapper(path, num_ws=world.generator.num_ws)
    if rel == "hairclip.safetensors":
        return load_hair_mapper(path, num_ws=world.generator.num_ws)
    if rel == "maniclip.safetensors":
        return load_maniclip_editor(path)
    return world  # the world's own networks load strictly with it


# the StyleCLIP mappers share one recipe (their prompts and groups differ): one of them replays here
REPLAYED = sorted(n for n in B.builds() if not n.startswith("mapper-") or n == "mapper-afro")


def test_the_mapper_builds_differ_only_in_prompt_and_groups():
    mappers = [b for n, b in B.builds().items() if n.startswith("mapper-")]
    assert len(mappers) >= 4
    assert len({replace(b.config, groups=()) for b in mappers}) == 1
    assert {b.parents for b in mappers} == {B.builds()["mapper-afro"].parents}


@pytest.mark.parametrize("name", REPLAYED)
def test_each_build_replays_from_its_parents_stages_and_ships(name, tmp_path, monkeypatch):
    import hairlib
    from hairlib.mini import train_stylegan2

    torch.manual_seed(0)
    monkeypatch.setattr(train_stylegan2, "MAPPING_FIT", dict(train_stylegan2.MAPPING_FIT, steps=2, bank=256, batch=64))
    # the reference ops: the same step, without compiling the fast path's CPU kernels for 2 steps
    monkeypatch.setattr(train_stylegan2, "train_paired", functools.partial(train_stylegan2.train_paired,
                                                                          execution="reference"))
    monkeypatch.setenv("HAIRLIB_OPS", "ref")
    build = B.builds()[name]
    written = B.run_build(name, steps=2, batch=4, staging=tmp_path, evaluate=False)
    assert sorted(str(p.relative_to(tmp_path / "weights")) for p in written) == sorted(build.files)
    for rel in build.files:
        lineage = _meta(rel, tmp_path / "weights")["lineage"]
        assert lineage["build"] == name and lineage["exact"] and (lineage["config"]["steps"], lineage["config"]["batch"]) == (2, 4)
        assert lineage["parents"] == {p: _meta(f"{p}.safetensors")["sha256"] for p in build.parents}
    world = hairlib.load_world("mini", weights_dir=B.parents_dir(tmp_path, "check"))  # the staged files in place
    for rel in build.files:
        assert _load(rel, tmp_path / "check" / "parents" / rel, world) is not None
    shipped = B.ship(name, staging=tmp_path, package=tmp_path / "package", logs=tmp_path / "logs")
    for path, rel in zip(shipped, build.files):
        assert path.read_bytes() == (tmp_path / "weights" / rel).read_bytes()
    assert (tmp_path / "logs" / f"mini_{name}" / "log.jsonl").exists() == (tmp_path / name / "run" / "log.jsonl").exists()


def test_ship_refuses_what_was_not_staged(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m hairlib.mini.build classifier"):
        B.ship("classifier", staging=tmp_path, package=tmp_path / "package")


def test_unknown_build_exits_2(capsys):
    assert B.main(["nope"]) == 2
    assert "unknown build nope" in capsys.readouterr().out
