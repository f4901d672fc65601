"""Every notebook runs top to bottom (on a slice of MNIST) with the public API only."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_is_a_walkthrough_per_technique_and_the_pipeline():
    names = " ".join(p.name for p in NOTEBOOKS)
    for topic in ("pruning", "quantization", "distillation", "pipeline"):
        assert topic in names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("KCOMPRESS_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    book = nbformat.read(path, as_version=4)
    source = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    assert "kcompress._" not in source and "import tensorflow" not in source  # public API only
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
