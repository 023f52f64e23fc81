"""Conventions every course notebook follows (GUIDE.md section 4)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tutorial_utils.exercises import generate_all
from tutorial_utils.notebook_setup import COLAB_SETUP_CELL

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == COLAB_SETUP_CELL, "first code cell must be the Colab setup cell"
    assert nb.cells[0].cell_type == "markdown" and "Learning objectives" in nb.cells[0].source
    counts = [c.execution_count for c in code if c.source.strip()]
    assert None not in counts, "saved with unexecuted cells"
    assert counts == sorted(counts), "cells were run out of order"
    for c in code:
        for out in c.get("outputs", []):
            assert out.output_type != "error", f"error output saved in cell: {c.source[:60]}"
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in code for o in c.get("outputs", [])), "no saved figure"
    assert any(c.source.startswith("# NBVAL_CHECK_OUTPUT") for c in code), \
        "no cell's numbers are checked by nbval"
    for c in code:
        if "NBVAL_SKIP" in c.source:
            assert "because" in c.source.lower(), "an NBVAL_SKIP cell must say why"


def test_student_versions_are_up_to_date():
    problems = generate_all(ROOT / "notebooks", ROOT / "notebooks" / "exercises", check=True)
    assert not problems, problems
