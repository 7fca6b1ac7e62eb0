"""The command line: info offline, clear errors with exit code 2, bench ops on CPU."""
import subprocess
import sys

import pytest

from hairlib import cli


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hairlib.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_info_offline_reports_missing_weights_without_traceback(tmp_path):
    import os

    env = dict(os.environ, HAIRLIB_HOME=str(tmp_path), HAIRLIB_OFFLINE="1")
    r = run_cli("info", env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    out = r.stdout
    assert "device:" in out and "ops:" in out and "torch" in out
    assert "missing" in out and "hairlib fetch" in out
    assert "stylegan2-ffhq-1024" in out and "clip-vit-b32" in out


def test_edit_rejects_bad_input_before_loading_anything(tmp_path, capsys):
    out = tmp_path / "o.png"
    assert cli.main(["edit", "--text", "x", "--method", "magic", "--out", str(out)]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err
    assert cli.main(["edit", "--text", "  ", "--out", str(out)]) == 2
    assert "--text is required" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert cli.main(["edit", "--text", "red hair", "--image", str(tmp_path / "bad.png"), "--out", str(out)]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert cli.main(["edit", "--text", "red hair", "--out", str(tmp_path / "o.gif")]) == 2
    assert not list(tmp_path.glob("o*"))


def test_edit_ffhq_offline_lists_the_weights_to_fetch(tmp_path):
    import os

    env = dict(os.environ, HAIRLIB_HOME=str(tmp_path / "home"), HAIRLIB_OFFLINE="1")
    photo = tmp_path / "photo.png"
    from PIL import Image
    Image.new("RGB", (64, 64), "gray").save(photo)
    r = run_cli("edit", "--world", "ffhq", "--image", str(photo), "--text", "curly hair", "--out",
                str(tmp_path / "out.png"), env=env)
    assert r.returncode == 2, r.stderr
    msg = r.stdout + r.stderr
    assert "Traceback" not in msg
    for f in ("stylegan2-ffhq-config-f.pt", "e4e_ffhq_encode.pt", "model_ir_se50.pth", "hairlib fetch"):
        assert f in msg
    assert not (tmp_path / "out.png").exists()


def test_edit_and_train_on_a_tiny_world(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HAIRLIB_MINI_WEIGHTS", str(tiny_weights))
    out = tmp_path / "edit.png"
    assert cli.main(["edit", "--text", "red hair", "--steps", "2", "--n", "2", "--out", str(out)]) == 0
    from PIL import Image
    assert Image.open(out).size[0] > 2 * 16
    import numpy as np
    from hairlib.mini import render as R
    render = tmp_path / "render.png"
    Image.fromarray(R.render_batch(R.sample_params(np.random.default_rng(0), n=1))[0][0]).save(render)
    out.unlink()
    assert cli.main(["edit", "--image", str(render), "--text", "afro", "--steps", "2", "--out", str(out)]) == 0
    assert out.exists()
    from hairlib.worlds import World
    asked, invert = [], World.invert
    monkeypatch.setattr(World, "invert", lambda self, x, steps=None, **kw: asked.append(steps) or invert(self, x, steps, **kw))
    assert cli.main(["edit", "--image", str(render), "--text", "afro", "--steps", "2", "--invert-steps", "0",
                     "--out", str(out)]) == 0 and asked == [0]  # the encoder alone
    capsys.readouterr()
    assert cli.main(["edit", "--image", str(render), "--text", "afro", "--invert-steps", "-1", "--out", str(out)]) == 2
    assert "--invert-steps must be at least 0" in capsys.readouterr().err
    assert cli.main(["edit", "--text", "afro", "--method", "mapper", "--out", str(out)]) == 2
    assert "no mapper for 'afro'" in capsys.readouterr().err
    assert cli.main(["train", "mapper", "--text", "afro", "--steps", "3", "--batch", "2", "--out", str(tmp_path / "runs")]) == 0
    ckpt = tmp_path / "runs" / "mini-afro" / "afro.safetensors"
    assert ckpt.exists()
    assert cli.main(["edit", "--text", "afro", "--method", "mapper", "--mapper", str(ckpt), "--out", str(out)]) == 0


def test_fetch_offline_fails_cleanly(tmp_path):
    import os

    env = dict(os.environ, HAIRLIB_HOME=str(tmp_path), HAIRLIB_OFFLINE="1")
    r = run_cli("fetch", "stylegan2-ffhq-1024", env=env)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    assert "stylegan2-ffhq-config-f.pt" in r.stderr + r.stdout
    assert not list(tmp_path.rglob("*.pt"))


def test_bench_ops_quick_on_cpu(tmp_path, capsys):
    assert cli.main(["bench", "ops", "--quick", "--no-compile", "--device", "cpu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "upfirdn2d up x2" in out and "bias + leaky ReLU" in out and "StyleGAN2 G" in out
    rows = (tmp_path / "ops-cpu.csv").read_text().splitlines()
    assert rows[0].startswith("device,case") and len(rows) > 8


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as e:
        cli.main(["frobnicate"])
    assert e.value.code == 2


def test_eval_writes_a_table(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HAIRLIB_MINI_WEIGHTS", str(tiny_weights))
    assert cli.main(["eval", "--method", "optimize", "--steps", "1", "--n", "2", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "eval-mini-optimize.md").read_text()  # one method: never over the full table
    assert "| optimize | blond |" in table and "mean of 8" in table
    assert (tmp_path / "eval-mini-optimize.csv").read_text().startswith("method,task,n,success")
    assert "kept_by" not in (tmp_path / "eval-mini-optimize.csv").read_text()  # per attribute: in the .md
    assert "What else the edits changed" in table and "| optimize | glasses | " in table
    assert not (tmp_path / "eval-mini.md").exists()
    assert not list(tmp_path.glob(".*.partial.json"))  # the finished tasks' file goes once the tables are written
    assert cli.main(["eval", "--n", "0"]) == 2


def test_bench_edit_times_each_method_beside_the_paper(tiny_weights):
    import hairlib
    from hairlib import bench

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    rows = bench.bench_edit(world, quick=True, progress=False)
    assert [r["method"] for r in rows] == ["optimize", "optimize", "mapper", "global pre-processing",
                                           "global pre-processing", "global"]
    assert rows[0]["what"] == "40 steps, 1 image" and "8 views" in rows[1]["what"]
    assert all(r["seconds"] > 0 and r["paper_seconds"] == bench.PAPER_SECONDS[r["method"]] for r in rows)
    assert "x paper" in bench.format_edit_table(rows)


def test_bench_invert_times_both_executions_side_by_side(tiny_weights, tmp_path):
    import hairlib
    from hairlib import bench

    world = hairlib.load_world("mini", weights_dir=tiny_weights)
    modes = ["reference", "auto"] + (["auto, bf16"] if hairlib.ops.has_amx_bf16() else [])
    rows = bench.bench_invert(world, quick=True)
    assert [(r["batch"], r["execution"]) for r in rows] == [(b, m) for b in (1, 8) for m in modes]
    assert all(r["ms"] > 0 for r in rows) and rows[0]["speedup"] == 1.0
    assert world.generator.convs[0].conv.impl == "auto"  # the benchmark leaves the generator as it found it
    assert "speedup" in bench.format_invert_table(rows)
    assert bench.write_invert_csv(rows, tmp_path / "invert.csv").read_text().count("\n") == 1 + len(rows)
