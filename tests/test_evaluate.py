"""hairlib.evaluate: what success, preservation and the table mean."""
import math

import pytest
import torch

from hairlib import evaluate as E
from hairlib.mini.vocab import HAIRSTYLES, value_index


def _labels(**kw):
    base = {"hair_color": [0, 0, 0, 0], "hairstyle": [0, 0, 0, 0], "smiling": [0, 0, 0, 0], "hat": [0, 0, 0, 0]}
    base.update(kw)
    return {k: torch.tensor(v) for k, v in base.items()}


def test_success_counts_only_faces_that_did_not_have_the_target():
    task = next(t for t in E.EDIT_TASKS if t.name == "smiling")
    before = _labels(smiling=[1, 0, 0, 0])
    after = _labels(smiling=[1, 1, 0, 1])
    s = E._label_scores(None, task, before, after)
    assert s["success"] == pytest.approx(2 / 3)  # 2 of the 3 faces that were not smiling
    assert s["preserved"] == 1.0 and s["all_kept"] == 1.0
    after = _labels(smiling=[1, 1, 1, 1], hair_color=[0, 3, 0, 0])
    s = E._label_scores(None, task, before, after)
    assert s["success"] == 1.0 and s["preserved"] == pytest.approx(1 - 1 / 12) and s["all_kept"] == 0.75
    assert s["kept_by"] == {"hair_color": 0.75, "hairstyle": 1.0, "hat": 1.0}  # per other attribute
    table = E.format_changes([{"method": "global", "task": "smiling", **s}], top=2)
    assert "| global | smiling | hair_color 25%, hairstyle 0% |" in table
    assert E.format_changes([{"method": "global", "task": "smiling"}]) == ""  # rows without kept_by
    assert math.isnan(E._label_scores(None, task, after, after)["success"])  # nobody left to edit


def test_hairstyle_edits_may_move_hats_and_bald_heads_have_no_colour():
    task = next(t for t in E.EDIT_TASKS if t.name == "afro")
    afro, bald = value_index("hairstyle", "afro"), HAIRSTYLES.index("bald")
    before = _labels(hairstyle=[bald, 0, 0, 0], hat=[0, 1, 0, 0])
    after = _labels(hairstyle=[afro, afro, afro, 0], hat=[0, 0, 0, 0], hair_color=[5, 0, 0, 0])
    s = E._label_scores(None, task, before, after)
    assert s["success"] == pytest.approx(3 / 4) and s["preserved"] == 1.0


def test_table_and_summary():
    rows = [{"method": "global", "task": "red", "n": 4, "success": 0.5, "preserved": 1.0, "identity": 0.9,
             "clip": 0.3, "seconds": 0.01},
            {"method": "global", "task": "afro", "n": 4, "success": float("nan"), "preserved": 0.5, "identity": 0.7,
             "clip": 0.2, "seconds": 0.03}]
    table = E.format_table(rows + E.summarize(rows))
    assert "| global | red | 50% | 100% | 0.900 |" in table and "| - |" in table
    assert "mean of 2" in table


def test_evaluate_runs_each_method_on_the_same_faces(tiny_weights):
    import hairlib
    from hairlib.nets.hair_mapper import HairMapper

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    G = world.generator
    mapper = HairMapper(G.num_ws, G.style_dim, world.clip.embed_dim)
    rows = E.evaluate(world, "hairclip", n=3, batch=2, mapper=mapper)
    assert [r["task"] for r in rows] == [t.name for t in E.HAIR_TASKS]  # hair tasks only
    assert all(0 <= r["preserved"] <= 1 and -1 <= r["identity"] <= 1 and r["psnr_bg"] > 0 for r in rows)
    assert E.evaluate(world, "mapper", n=2) == []  # no shipped mapper in this world: nothing to score
    rows = E.evaluate(world, "optimize", E.EDIT_TASKS[-1:], n=2, steps=1)
    assert rows[0]["task"] == "glasses" and rows[0]["seconds"] > 0


def test_score_edit_measures_an_edit_already_made_as_evaluate_does(tiny_weights):
    import hairlib
    from hairlib.nets.hair_mapper import HairMapper

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    G = world.generator
    mapper = HairMapper(G.num_ws, G.style_dim, world.clip.embed_dim)
    task = E.HAIR_TASKS[0]
    [row] = E.evaluate(world, "hairclip", [task], n=3, batch=2, mapper=mapper)
    r = hairlib.edit(world, world.sample(3, seed=1234), method="hairclip", mapper=mapper, **task.hairclip)
    mine = E.score_edit(world, r, task, batch=2)
    assert list(mine) == list(row)  # the same columns, in the same order
    for k, v in row.items():
        if k == "seconds":
            assert mine[k] > 0
        elif isinstance(v, float):
            assert mine[k] == pytest.approx(v, abs=1e-5, nan_ok=True), k
        else:
            assert mine[k] == v, k


def test_hairclip_grid_scores_every_pair_and_summarises(tiny_weights):
    import math

    import hairlib
    from hairlib.methods.hairclip import hairclip_vocab
    from hairlib.nets.hair_mapper import HairMapper

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    G = world.generator
    mapper = HairMapper(G.num_ws, G.style_dim, world.clip.embed_dim)
    rows = E.evaluate_hairclip_grid(world, n=3, batch=2, mapper=mapper)
    styles, colors = hairclip_vocab(world)
    assert [r["task"] for r in rows] == [f"{s} + {c}" for s in styles for c in colors]
    for r in rows:
        for k in ("style_success", "color_success"):
            assert math.isnan(r[k]) or 0 <= r[k] <= 1
        assert 0 <= r["both"] <= 1 and 0 <= r["preserved"] <= 1 and r["psnr_bg"] > 0
    summary = E.summarize_grid(rows)
    assert len(summary) == len(styles) + len(colors) + 1 and summary[-1]["task"] == f"all {len(rows)} pairs"
    first = [r for r in rows if r["task"].startswith(styles[0] + " + ")]
    assert summary[0]["both"] == pytest.approx(sum(r["both"] for r in first) / len(first))
    assert "style_success" in E.format_table(summary)


def test_mappers_are_matched_to_tasks_by_their_prompt(tiny_weights, tmp_path):
    import shutil

    import hairlib
    from hairlib.methods.mapper import save_mapper
    from hairlib.nets.mappers import LevelsMapper

    wdir = tmp_path / "w"
    shutil.copytree(tiny_weights, wdir)
    world = hairlib.load_world("mini", weights_dir=wdir)
    G = world.generator
    red = next(t for t in E.EDIT_TASKS if t.name == "red")
    save_mapper(LevelsMapper(G.num_ws, G.style_dim), wdir / "mappers" / "rouge.safetensors", text=red.text)
    world = hairlib.load_world("mini", weights_dir=wdir)  # file name unrelated to the prompt
    rows = E.evaluate(world, "mapper", n=2)
    assert [r["task"] for r in rows] == ["red"]


def test_an_interrupted_evaluation_resumes_from_its_finished_tasks(tiny_weights, tmp_path, monkeypatch):
    import hairlib
    from hairlib.nets.hair_mapper import HairMapper

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    G = world.generator
    torch.manual_seed(1)
    mapper = HairMapper(G.num_ws, G.style_dim, world.clip.embed_dim)
    tasks = E.HAIR_TASKS[:3]
    whole = E.evaluate(world, "hairclip", tasks, n=3, batch=2, mapper=mapper)

    run, calls = E._run, []

    def breaks_on_the_second_task(world_, method, w, task, kw):
        calls.append(task.name)
        if task.name == tasks[1].name:
            raise KeyboardInterrupt
        return run(world_, method, w, task, kw)

    partial = tmp_path / "eval.partial.json"
    monkeypatch.setattr(E, "_run", breaks_on_the_second_task)
    with pytest.raises(KeyboardInterrupt):
        E.evaluate(world, "hairclip", tasks, n=3, batch=2, mapper=mapper, resume=partial)
    assert partial.exists() and len(__import__("json").loads(partial.read_text())["rows"]) == 1

    calls.clear()
    monkeypatch.setattr(E, "_run", lambda *a: (calls.append(a[3].name), run(*a))[1])
    resumed = E.evaluate(world, "hairclip", tasks, n=3, batch=2, mapper=mapper, resume=partial)
    assert list(dict.fromkeys(calls)) == [t.name for t in tasks[1:]]  # the finished task is not edited again
    assert [r["task"] for r in resumed] == [t.name for t in tasks]
    for a, b in zip(resumed, whole):
        assert a.keys() == b.keys()
        for k in a:
            if k != "seconds":
                assert a[k] == pytest.approx(b[k], abs=1e-5, nan_ok=True), k

    # another mapper (or other faces) is another run: nothing is taken from the file
    calls.clear()
    with torch.no_grad():
        for prm in mapper.parameters():
            prm.add_(0.01)
    E.evaluate(world, "hairclip", tasks, n=3, batch=2, mapper=mapper, resume=partial)
    assert list(dict.fromkeys(calls)) == [t.name for t in tasks]  # each task edited afresh (2 batches each)
    calls.clear()
    E.evaluate(world, "hairclip", tasks, n=3, seed=7, batch=2, mapper=mapper, resume=partial)
    assert list(dict.fromkeys(calls)) == [t.name for t in tasks]


def test_an_interrupted_hairclip_grid_resumes_from_its_finished_pairs(tiny_weights, tmp_path, monkeypatch):
    import json

    import hairlib
    from hairlib.nets.hair_mapper import HairMapper

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    G = world.generator
    torch.manual_seed(2)
    mapper = HairMapper(G.num_ws, G.style_dim, world.clip.embed_dim)
    edit, calls = hairlib.edit, []

    def breaks_on_the_fifth_pair(*a, **kw):
        calls.append((kw["hairstyle"], kw["color"]))
        if len(calls) == 5:
            raise KeyboardInterrupt
        return edit(*a, **kw)

    partial = tmp_path / "grid.partial.json"
    monkeypatch.setattr(hairlib, "edit", breaks_on_the_fifth_pair)
    with pytest.raises(KeyboardInterrupt):
        E.evaluate_hairclip_grid(world, n=2, batch=2, mapper=mapper, resume=partial)
    saved = json.loads(partial.read_text())["rows"]
    assert len(saved) == 4
    monkeypatch.setattr(hairlib, "edit", lambda *a, **kw: (calls.append((kw["hairstyle"], kw["color"])), edit(*a, **kw))[1])
    calls.clear()
    resumed = E.evaluate_hairclip_grid(world, n=2, batch=2, mapper=mapper, resume=partial)
    assert len(calls) == len(resumed) - 4  # the finished pairs are not edited again
    assert [r["task"] for r in resumed[:4]] == list(saved) and resumed[:4] == list(saved.values())
    calls.clear()
    fresh = E.evaluate_hairclip_grid(world, n=2, batch=2, mapper=mapper)
    assert len(calls) == len(fresh) == len(resumed)
    for a, b in zip(resumed, fresh):
        assert a["task"] == b["task"]
        for k in ("style_success", "color_success", "both", "preserved", "identity", "psnr_bg"):
            assert a[k] == pytest.approx(b[k], abs=1e-5, nan_ok=True), (a["task"], k)
    calls.clear()  # other faces: another run, nothing taken from the file
    E.evaluate_hairclip_grid(world, n=2, seed=5, batch=2, mapper=mapper, resume=partial)
    assert len(calls) == len(fresh)
