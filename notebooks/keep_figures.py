"""Re-run a notebook top to bottom and keep its figures, for the notebooks committed with them
(the quickstart): ``python notebooks/keep_figures.py notebooks/00_quickstart.ipynb``.

It executes in a scratch folder with the notebook's full (not SMOKE) settings, then keeps what a
reader of the committed file should see: figures (as JPEG, 4-5x smaller in git than PNG), printed
numbers and text results; it drops progress-bar widgets and stderr (warnings, bars).
Run it with nothing else on the machine: the printed timings are part of what it commits."""
import sys
import tempfile
import time

import nbclient
import nbformat


def keep_figures(path: str) -> None:
    book = nbformat.read(path, as_version=4)
    t = time.time()
    with tempfile.TemporaryDirectory() as work:
        nbclient.NotebookClient(book, timeout=1800, kernel_name="python3",
                                resources={"metadata": {"path": work}}).execute()
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            data = out.get("data", {})
            if (out.output_type == "stream" and out.name == "stderr") or "application/vnd.jupyter.widget-view+json" in data:
                continue
            if "image/png" in data and "image/jpeg" in data:
                data.pop("image/png")
            kept.append(out)
        cell.outputs = kept
    book.metadata.pop("widgets", None)
    nbformat.write(book, path)
    print(f"{path}: executed in {time.time() - t:.0f} s, figures kept")


if __name__ == "__main__":
    for p in sys.argv[1:] or ["notebooks/00_quickstart.ipynb"]:
        keep_figures(p)
