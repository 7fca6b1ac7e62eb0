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
