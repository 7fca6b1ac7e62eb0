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


def test_pending_commands_exit_2_with_a_message(capsys):
    assert cli.main(["edit", "--text", "x"]) == 2
    assert "not available yet" in capsys.readouterr().err


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
