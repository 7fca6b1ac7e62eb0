"""The repository keeps its promises: CI runs the README's test command, verbatim."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_command(tag: str) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    i = lines.index(f"<!-- {tag} -->")
    block = lines[i + 1: lines.index("```", i + 2)]
    assert block[0].startswith("```")
    return "\n".join(block[1:]).strip()


def test_ci_runs_the_readme_test_command():
    cmd = readme_command("test-command")
    ci = (ROOT / ".ci" / "run").read_text()
    assert cmd in ci.splitlines(), f"README test command {cmd!r} not found verbatim in .ci/run"
    assert "pytest" in cmd


def test_readme_demo_command_exists():
    cmd = readme_command("demo-command")
    assert "pip install" in cmd and "hairlib demo" in cmd


def test_readme_is_short_and_its_tables_are_the_csvs():
    """README <= 12 KB; its results and settings tables are what ``python -m hairlib.results``
    makes from results/eval/*.csv and hairlib.methods.settings (rerun it with --write)."""
    from hairlib import results

    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024
    for name, make in results.BLOCKS.items():
        begin, end = results.markers(name)
        block = text[text.index(begin) + len(begin): text.index(end)].strip()
        assert block == make(), f"README's {name} table differs from the CSVs: run python -m hairlib.results --write"


def test_results_table_reads_the_csvs(tmp_path):
    from hairlib import results

    (tmp_path / "eval-mini-mapper.csv").write_text(
        "method,task,n,success,preserved,all_kept,identity,clip,seconds,psnr_bg,ssim_bg\n"
        "mapper,red,64,1.0,0.8,0.1,0.9,0.3,0.01,30.0,0.8\nmapper,afro,64,0.5,0.9,0.1,0.7,0.3,0.03,28.0,0.8\n")
    table = results.results_table(tmp_path)
    assert "| StyleCLIP latent mapper | red, afro | 64 | 75% | 85% | 0.80 | 29.0 dB | 20 ms |" in table
    after = tmp_path / "after"
    after.mkdir()
    (after / "eval-mini-mapper.csv").write_text(
        "method,task,n,success,preserved,all_kept,identity,clip,seconds,psnr_bg,ssim_bg\n"
        "mapper,red,64,1.0,0.9,0.1,0.9,0.3,0.01,30.0,0.8\nmapper,afro,64,1.0,0.9,0.1,0.7,0.3,0.03,28.0,0.8\n")
    (after / "sentences-mini-global.csv").write_text(
        "method,attributes,n,reached,kept,identity,psnr_bg,spread,seconds\nglobal,3,64,0.5,0.9,0.6,40.0,nan,0.02\n")
    beside = results.beside_table(tmp_path, after)
    assert "| StyleCLIP latent mapper | red, afro | 64 | 75% -> 100% | 85% -> 90% | 0.80 | 29.0 dB | 20 ms |" in beside
    assert "| StyleCLIP global directions (after only) | held-out sentences of 3 attributes | 64 | 50% |" in beside


def test_readme_names_files_that_exist():
    import re

    text = (ROOT / "README.md").read_text()
    for nb in re.findall(r"`(\d\d_[a-z_]+)`", text):
        assert (ROOT / "notebooks" / f"{nb}.ipynb").exists(), nb
    for path in re.findall(r"`((?:results|hairlib|docs|data|licenses|tests)/[\w./-]+\.\w+)`", text):
        if path.startswith("results/demo/"):
            continue  # written by hairlib demo
        assert (ROOT / path).exists(), path
