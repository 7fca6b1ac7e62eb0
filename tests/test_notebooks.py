"""The notebooks run top to bottom on the mini world, on CPU, with their SMOKE settings
(HAIRLIB_SMOKE=1), each in a fresh working folder. They are committed without outputs, except
the quickstart, which keeps its figures so that a reader sees them without running it."""
import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
WITH_FIGURES = {"00_quickstart"}


def _outputs(book):
    return [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _figures(outputs) -> int:
    return sum(bool({"image/png", "image/jpeg"} & set(o.get("data", {}))) for o in outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_as_the_project_asks(path):
    nbformat = pytest.importorskip("nbformat")
    book = nbformat.read(path, as_version=4)
    outputs = _outputs(book)
    if path.stem not in WITH_FIGURES:
        assert not outputs, f"{path.name}: commit it without outputs"
        return
    assert _figures(outputs) >= 5, f"{path.name}: commit it with its figures"
    assert not [o for o in outputs if o.get("output_type") == "error"], f"{path.name}: committed with an error"
    assert not [o for o in outputs if o.get("name") == "stderr"], f"{path.name}: progress bars and warnings left in"
    code = [c for c in book.cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: its figures come from one run, top to bottom"


@pytest.fixture(scope="session")
def notebook_home(tmp_path_factory):
    """One hairlib cache for every notebook of a run (shared by xdist's workers): what one
    notebook pre-processes once, e.g. the global directions' statistics of the mini world,
    the next one loads, as a reader's notebooks do; a test run still starts from an empty one."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    return root / "notebook_home"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch, notebook_home):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("HAIRLIB_SMOKE", "1")
    monkeypatch.setenv("HAIRLIB_HOME", str(notebook_home))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("HAIRLIB_TEST_THREADS", "1"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(book, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for o in _outputs(book) if o.get("output_type") == "error"]
    assert not errors
    if path.stem in WITH_FIGURES:  # every figure cell drew its figure
        assert _figures(_outputs(book)) >= 5
